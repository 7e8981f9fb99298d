"""How fast the web console loads over a large ledger: ``python -m bench.console [--records 100000]``.

A SQLite store is filled with ``--records`` usage records (bench.ledger's made-up traffic: 30 days, 40 keys with
budgets, 8 models; through the ledger into the store, in batches, with a progress bar), ``modelway serve`` runs on
it, and Debian's chromium (headless, through chromedriver and Selenium; never a downloaded browser) signs in and
opens each page of the console ``--rounds`` times. A page's time is from the navigation to its data on screen (its
table or chart rendered, every request it makes answered). Prints a markdown table; the issue's bar is 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

MASTER = "sk-bench-console"
PAGES = {  # page -> the element whose presence says its data is on screen
    "overview?range=86400": "overview-deployments",
    "models": "deployments",
    "keys": "keys-table",
    "usage?group_by=model&range=2592000": "usage-table",
    "requests": "requests-table",
}


def _fill(db: Path, records: int) -> tuple[float, list[str]]:
    """``records`` of bench.ledger's made-up traffic (40 keys, 8 models) through the ledger, and a key row with a
    budget for each key id it uses (so the keys page has its spends to show): seconds taken, the model names."""
    import dataclasses

    from modelway.auth.keys import new_key
    from modelway.store.sql import SQLStore

    from .ledger import Traffic, fill

    async def run() -> tuple[float, list[str]]:
        store = SQLStore(f"sqlite:///{db}")
        await store.open()
        traffic = Traffic(keys=40, models=8, seed=7)
        for i, key_id in enumerate(traffic.keys):
            _, key = new_key(f"team-{i:02d}", budget=1000.0)
            await store.insert_key(dataclasses.replace(key, id=key_id))
        took = await fill(store, records, days=30, traffic=traffic, batch=5000)
        await store.aclose()
        return float(took["seconds"]), traffic.models

    return asyncio.run(run())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000, help="usage records in the store (default 100000)")
    ap.add_argument("--rounds", type=int, default=5, help="loads of each page (the median is shown; default 5)")
    args = ap.parse_args(argv)
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        print("needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver", file=sys.stderr)
        return 2
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory(prefix="modelway-bench-console-") as tmp:
        db = Path(tmp) / "gw.db"
        fill_s, models = _fill(db, args.records)
        port = _free_port()
        cfg = Path(tmp) / "gw.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "server": {"master_key": MASTER},
                    "store": {"url": f"sqlite:///{db}"},
                    "usage": {"spill_path": str(Path(tmp) / "spill.jsonl")},
                    "models": [{"name": m, "deployments": [{"model": f"openai/{m}", "api_key": "x"}]} for m in models],
                }
            )
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "modelway.cli", "serve", "-c", str(cfg), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(url + "/health/readiness", timeout=1):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        print(server.stderr.read().decode() if server.stderr else "", file=sys.stderr)
                        return 1
                    time.sleep(0.05)
            options = webdriver.ChromeOptions()
            options.binary_location = chromium
            for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
                options.add_argument(a)
            d = webdriver.Chrome(service=Service(driver), options=options)
            try:
                d.get(url + "/ui")
                d.find_element(By.CSS_SELECTOR, "[data-testid=signin-key]").send_keys(MASTER)
                d.find_element(By.CSS_SELECTOR, "[data-testid=signin-submit]").click()
                WebDriverWait(d, 10).until(lambda _: d.find_elements(By.CSS_SELECTOR, "[data-testid=nav-overview]"))
                times: dict[str, list[float]] = {p: [] for p in PAGES}
                for _ in range(args.rounds):
                    for page, ready in PAGES.items():
                        d.get("about:blank")
                        t0 = time.perf_counter()
                        d.get(f"{url}/ui#/{page}")
                        WebDriverWait(d, 30, poll_frequency=0.005).until(
                            lambda _, r=ready: d.find_elements(By.CSS_SELECTOR, f"[data-testid={r}]")
                        )
                        times[page].append(time.perf_counter() - t0)
            finally:
                d.quit()
        finally:
            server.terminate()
            server.wait(20)
    print(f"\n{args.records:,} usage records (filled in {fill_s:.1f} s, {args.records / fill_s:,.0f} records/s)\n")
    print("| page | load s (median) | runs s |")
    print("|---|---|---|")
    for page, runs in times.items():
        print(f"| {page.split('?')[0]} | {statistics.median(runs):.3f} | {', '.join(f'{r:.3f}' for r in runs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
