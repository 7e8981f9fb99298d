// English and Chinese. Keys are the English text; a missing translation shows the English.
const zh = {
  "Sign in": "登录", "Sign out": "退出登录", "Gateway key": "网关密钥",
  "The master key (server.master_key) or an admin key.": "主密钥（server.master_key）或管理员密钥。",
  "Invalid key.": "密钥无效。", "This key is not an admin key.": "该密钥不是管理员密钥。",
  "Overview": "概览", "Models": "模型", "Keys": "密钥", "Usage": "用量", "Requests": "请求数", "Request log": "请求日志", "Playground": "试用",
  "Last hour": "最近一小时", "Last day": "最近一天", "Last 7 days": "最近 7 天", "Last 30 days": "最近 30 天",
  "Requests per hour": "每小时请求数", "Requests per day": "每天请求数", "Errors": "错误", "Error rate": "错误率",
  "Tokens": "Token 数", "Cost": "费用", "In flight": "进行中", "p50 latency": "p50 延迟", "p95 latency": "p95 延迟",
  "TTFT p50": "首 Token p50", "By model": "按模型", "By deployment": "按部署", "Model": "模型",
  "Deployment": "部署", "Provider": "提供商", "State": "状态", "Circuit": "熔断", "Latency": "延迟",
  "Recent errors": "近期错误", "Failures": "失败", "Enable": "启用", "Disable": "停用", "enabled": "启用中",
  "disabled": "已停用", "cooling": "冷却中", "Refresh": "刷新", "Name": "名称", "Models allowed": "可用模型",
  "all": "全部", "Budget": "预算", "Spend": "花费", "Expires": "过期时间", "Created": "创建时间", "Status": "状态",
  "active": "有效", "revoked": "已吊销", "expired": "已过期", "Create key": "创建密钥", "Create": "创建",
  "Save": "保存", "Saved": "已保存", "Cancel": "取消", "Edit": "编辑", "Revoke": "吊销", "Copy": "复制", "Copied": "已复制",
  "Close": "关闭", "Admin key": "管理员密钥", "Budget period": "预算周期", "Expires in days": "有效天数",
  "comma-separated; empty: every model": "逗号分隔；留空表示全部模型",
  "This secret is shown only once. Copy it now.": "此密钥只显示一次，请立即复制。",
  "Revoke this key? Requests with it are refused at once.": "吊销此密钥？使用它的请求将立即被拒绝。",
  "Group by": "分组", "Range": "时间范围", "Export CSV": "导出 CSV", "Key": "密钥", "Endpoint": "接口",
  "Day": "日期", "Group": "分组", "Time": "时间", "Error": "错误", "Load more": "加载更多",
  "Status class": "状态类别", "any": "任意", "Apply": "应用", "Record": "记录", "No data yet.": "暂无数据。",
  "System prompt": "系统提示词", "Message": "消息", "Send": "发送", "Stop": "停止",
  "Time to first token": "首 Token 时间", "Total time": "总耗时", "Prompt tokens": "输入 Token",
  "Completion tokens": "输出 Token", "Keys created here can call the API at once.": "在此创建的密钥立即可用。",
  "Request body": "请求体", "Response body": "响应体", "The request had no body.": "该请求没有请求体。",
  "No body was logged: bodies are logged only when request_log.bodies is on.": "未记录请求体与响应体：仅在开启 request_log.bodies 时记录。",
  "A streamed answer's body is not logged.": "流式响应的内容不记录。",
  "Only a whole successful answer's body is logged.": "只记录成功的完整响应的内容。",
  "No store is configured (store.url): keys and usage need one.": "未配置存储（store.url）：密钥与用量需要存储。",
  "Deployments": "部署", "requests": "请求", "errors": "错误", "Cost per day": "每天费用",
  "rpm": "每分钟请求", "tpm": "每分钟 Token", "max parallel": "最大并发",
};
const dicts = { en: {}, zh };
const stored = localStorage.getItem("mw.lang");
let lang = stored in dicts ? stored : (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";

export function t(text) { return dicts[lang][text] || text; }
export function getLang() { return lang; }
export function setLang(value) {
  lang = value in dicts ? value : "en";
  localStorage.setItem("mw.lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}
// static text in index.html
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}
