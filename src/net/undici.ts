// undici's dispatchers and request API, loaded without undici's index module. Why: the index also loads
// fetch, WebSocket, EventSource, the mock agents and the HTTP cache, with about 30 more of Node's own
// modules: 71.1 MB of RSS against 58.9 MB for these alone (docs/decisions.md, "Webhook memory: what
// the process loads, and two V8 flags").
import type * as Undici from 'undici';
import api from 'undici/lib/api/index.js';
import AgentClass from 'undici/lib/dispatcher/agent.js';
import DispatcherClass from 'undici/lib/dispatcher/dispatcher.js';
import ProxyAgentClass from 'undici/lib/dispatcher/proxy-agent.js';

// What the index does to give every dispatcher request(), stream(), pipeline(), upgrade() and connect().
Object.assign(DispatcherClass.prototype, api);

export const Agent = AgentClass;
export type Agent = Undici.Agent;
export const Dispatcher = DispatcherClass;
export type Dispatcher = Undici.Dispatcher;
export const ProxyAgent = ProxyAgentClass;
export type ProxyAgent = Undici.ProxyAgent;
