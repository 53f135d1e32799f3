// undici's dispatchers and request API, loaded without undici's index module. Why: the index also loads
// fetch, WebSocket, EventSource, the mock agents and the HTTP cache, with about 30 more of Node's own
// modules: 71.1 MB of RSS against 58.9 MB for these alone (docs/decisions.md, "Webhook memory: what
// the process loads, and two V8 flags").
import api from 'undici/lib/api/index.js';
import Agent from 'undici/lib/dispatcher/agent.js';
import Dispatcher from 'undici/lib/dispatcher/dispatcher.js';
import ProxyAgent from 'undici/lib/dispatcher/proxy-agent.js';

// What the index does to give every dispatcher request(), stream(), pipeline(), upgrade() and connect().
Object.assign(Dispatcher.prototype, api);

export { Agent, Dispatcher, ProxyAgent };
