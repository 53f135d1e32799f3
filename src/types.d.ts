// Text imports (bundled by esbuild; see src/serve/default-maps.ts).
declare module '*.yaml' {
  const text: string;
  export default text;
}
