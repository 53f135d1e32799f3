// node:http, taken from Node's module table instead of imported as an ES module. Why: to build an ES
// module namespace for node:http, Node reads every export, and the lazy WebSocket, CloseEvent and
// MessageEvent exports load Node's bundled undici, http2, zlib and web streams: about 12 MiB of RSS in
// processes that use none of them (docs/decisions.md, "Webhook memory: what the process loads, and two
// V8 flags"). Type-only imports of node:http are erased and stay as they are.
export const http = process.getBuiltinModule('node:http');
