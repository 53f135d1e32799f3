// The embedded default maps: examples/default.yaml, bundled as text so `pullmap serve` works with no
// file and no cluster. (The bundler inlines it; `node` runs it with --experimental-import-text.)
import text from '../../examples/default.yaml' with { type: 'text' };

export const DEFAULT_MAPS_TEXT: string = text;
