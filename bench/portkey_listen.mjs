// Preloaded into Portkey's gateway by the benchmark (node --import): its start-server.js calls
// serve({port}) without a hostname, so it would listen on every interface; every server of the benchmark
// listens on 127.0.0.1 only. This fills in the host of a listen(port[, undefined][, callback]) call.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && (args[1] === undefined || typeof args[1] === "function")) {
    if (args.length >= 2 && args[1] === undefined) args[1] = "127.0.0.1";
    else args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
