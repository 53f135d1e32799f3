// Text imports (bundled by esbuild; see src/serve/default-maps.ts).
declare module '*.yaml' {
  const text: string;
  export default text;
}

// undici's own modules, imported one by one by src/net/undici.ts: each is one of undici's classes, with
// its published types (value, instance type and namespace).
declare module 'undici/lib/dispatcher/agent.js' {
  import { Agent } from 'undici';
  export default Agent;
}
declare module 'undici/lib/dispatcher/dispatcher.js' {
  import { Dispatcher } from 'undici';
  export default Dispatcher;
}
declare module 'undici/lib/dispatcher/proxy-agent.js' {
  import { ProxyAgent } from 'undici';
  export default ProxyAgent;
}
declare module 'undici/lib/api/index.js' {
  const api: Record<string, unknown>;
  export default api;
}
