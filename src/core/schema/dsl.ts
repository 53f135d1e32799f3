// A small schema language: each schema carries its OpenAPI v3 fragment (for the CRDs), a checker that
// names the failing field and the fix (for the config loader and the validating webhook), and its
// TypeScript type (via `Infer`). The map objects are declared once with it, in ../api/.
//
// Why not zod 4 or TypeBox: their messages are their own wording, not the field and the fix, and zod
// alone takes 33-76 ms to load at every CLI start (docs/decisions.md, "Schemas").

/** One problem with one field. `path` is the dotted field path from the object root. */
export interface FieldIssue {
  readonly path: string;
  readonly message: string;
}

/** An OpenAPI v3 schema fragment as the apiextensions.k8s.io/v1 structural schema wants it. */
export type OpenApiSchema = { [key: string]: unknown };

export interface Schema<T> {
  readonly openApi: OpenApiSchema;
  /** Returns the value with defaults applied, or undefined after pushing at least one issue. */
  readonly check: (value: unknown, path: string, issues: FieldIssue[]) => T | undefined;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

interface Docs {
  description: string;
}

const typeName = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;

export const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s !== undefined && s.length > 60 ? `${s.slice(0, 57)}...` : String(s);
};

export function string(
  options: Docs & {
    minLength?: number;
    maxLength?: number;
    example?: string;
    validate?: (s: string) => string | undefined;
  },
): Schema<string> {
  const openApi: OpenApiSchema = { type: 'string', description: options.description };
  if (options.minLength !== undefined) openApi.minLength = options.minLength;
  if (options.maxLength !== undefined) openApi.maxLength = options.maxLength;
  return {
    openApi,
    check(value, path, issues) {
      if (typeof value !== 'string') {
        issues.push({
          path,
          message: `must be a string${options.example ? ` such as ${show(options.example)}` : ''}, not ${typeName(value)}`,
        });
        return undefined;
      }
      if (options.minLength !== undefined && value.length < options.minLength) {
        issues.push({
          path,
          message:
            options.minLength === 1
              ? 'must not be empty'
              : `must have at least ${options.minLength} characters`,
        });
        return undefined;
      }
      if (options.maxLength !== undefined && value.length > options.maxLength) {
        issues.push({
          path,
          message: `is ${value.length} characters long; at most ${options.maxLength} are allowed`,
        });
        return undefined;
      }
      const problem = options.validate?.(value);
      if (problem !== undefined) {
        issues.push({ path, message: problem });
        return undefined;
      }
      return value;
    },
  };
}

export function oneOf<const V extends readonly string[]>(values: V, options: Docs): Schema<V[number]> {
  return {
    openApi: { type: 'string', enum: [...values], description: options.description },
    check(value, path, issues) {
      if (typeof value === 'string' && (values as readonly string[]).includes(value))
        return value as V[number];
      issues.push({
        path,
        message: `must be one of ${values.map((v) => `"${v}"`).join(', ')}, not ${show(value)}`,
      });
      return undefined;
    },
  };
}

export function boolean(options: Docs): Schema<boolean> {
  return {
    openApi: { type: 'boolean', description: options.description },
    check(value, path, issues) {
      if (typeof value === 'boolean') return value;
      issues.push({
        path,
        message: `must be true or false, not ${show(value)}${typeof value === 'string' ? ' (remove the quotes)' : ''}`,
      });
      return undefined;
    },
  };
}

export function integer(options: Docs & { minimum?: number }): Schema<number> {
  const openApi: OpenApiSchema = { type: 'integer', format: 'int64', description: options.description };
  if (options.minimum !== undefined) openApi.minimum = options.minimum;
  return {
    openApi,
    check(value, path, issues) {
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
        issues.push({ path, message: `must be a whole number, not ${show(value)}` });
        return undefined;
      }
      if (options.minimum !== undefined && value < options.minimum) {
        issues.push({ path, message: `must be at least ${options.minimum}` });
        return undefined;
      }
      return value;
    },
  };
}

export function list<T>(
  items: Schema<T>,
  options: Docs & { minItems?: number; maxItems?: number },
): Schema<T[]> {
  const openApi: OpenApiSchema = { type: 'array', description: options.description, items: items.openApi };
  if (options.minItems !== undefined) openApi.minItems = options.minItems;
  if (options.maxItems !== undefined) openApi.maxItems = options.maxItems;
  return {
    openApi,
    check(value, path, issues) {
      if (!Array.isArray(value)) {
        issues.push({ path, message: `must be a list, not ${typeName(value)}` });
        return undefined;
      }
      if (options.minItems !== undefined && value.length < options.minItems) {
        issues.push({
          path,
          message: `must have at least ${options.minItems} item${options.minItems === 1 ? '' : 's'}`,
        });
        return undefined;
      }
      if (options.maxItems !== undefined && value.length > options.maxItems) {
        issues.push({ path, message: `has ${value.length} items; at most ${options.maxItems} are allowed` });
        return undefined;
      }
      const before = issues.length;
      const out = value.map((item, i) => items.check(item, `${path}[${i}]`, issues));
      return issues.length === before ? (out as T[]) : undefined;
    },
  };
}

/** A string-to-string map, such as Kubernetes labels. */
export function stringMap(options: Docs & { maxEntries?: number }): Schema<Record<string, string>> {
  return {
    openApi: { type: 'object', description: options.description, additionalProperties: { type: 'string' } },
    check(value, path, issues) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        issues.push({ path, message: `must be a map of strings, not ${typeName(value)}` });
        return undefined;
      }
      const entries = Object.entries(value);
      if (options.maxEntries !== undefined && entries.length > options.maxEntries) {
        issues.push({
          path,
          message: `has ${entries.length} entries; at most ${options.maxEntries} are allowed`,
        });
        return undefined;
      }
      const before = issues.length;
      for (const [k, v] of entries) {
        if (typeof v !== 'string')
          issues.push({ path: `${path}.${k}`, message: `must be a string, not ${typeName(v)} (quote it)` });
      }
      return issues.length === before ? { ...(value as Record<string, string>) } : undefined;
    },
  };
}

/** A value that is either one string or a list of them; normalised to a list. */
export function stringOrList(item: Schema<string>, options: Docs & { maxItems: number }): Schema<string[]> {
  const asList = list(item, { description: options.description, minItems: 1, maxItems: options.maxItems });
  return {
    // Structural schemas cannot say "string or array"; the API server keeps the value as is and the
    // validating webhook and the controller apply `check`.
    openApi: {
      description: `${options.description} (a string or a list of strings)`,
      'x-kubernetes-preserve-unknown-fields': true,
    },
    check(value, path, issues) {
      if (typeof value === 'string') {
        const one = item.check(value, path, issues);
        return one === undefined ? undefined : [one];
      }
      if (!Array.isArray(value)) {
        issues.push({ path, message: `must be a string or a list of strings, not ${typeName(value)}` });
        return undefined;
      }
      return asList.check(value, path, issues);
    },
  };
}

interface Field<T, Opt extends boolean> {
  readonly schema: Schema<T>;
  readonly optional: Opt;
  readonly default?: T;
}

export const required = <T>(schema: Schema<T>): Field<T, false> => ({ schema, optional: false });
export const optional = <T>(schema: Schema<T>, defaultValue?: T): Field<T, true> =>
  defaultValue === undefined ? { schema, optional: true } : { schema, optional: true, default: defaultValue };

type Fields = Record<string, Field<unknown, boolean>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
type ObjectOf<F extends Fields> = Simplify<
  {
    [K in keyof F as F[K] extends Field<unknown, false> ? K : never]: F[K] extends Field<infer T, boolean>
      ? T
      : never;
  } & {
    [K in keyof F as F[K] extends Field<unknown, true> ? K : never]?: F[K] extends Field<infer T, boolean>
      ? T
      : never;
  }
>;

/**
 * An object with known fields. Unknown fields are errors (a typo such as `mutabelTags` must not be
 * silently ignored), except where `allowUnknown` says the object is open (Kubernetes metadata).
 */
export function object<F extends Fields>(
  fields: F,
  options: Docs & { allowUnknown?: boolean },
): Schema<ObjectOf<F>> {
  const properties: Record<string, OpenApiSchema> = {};
  const requiredNames: string[] = [];
  for (const [name, field] of Object.entries(fields)) {
    const prop = { ...field.schema.openApi };
    if (field.default !== undefined) prop.default = field.default;
    properties[name] = prop;
    if (!field.optional) requiredNames.push(name);
  }
  const openApi: OpenApiSchema = { type: 'object', description: options.description, properties };
  if (options.allowUnknown) openApi['x-kubernetes-preserve-unknown-fields'] = true;
  if (requiredNames.length > 0) openApi.required = requiredNames;
  const known = Object.keys(fields);
  return {
    openApi,
    check(value, path, issues) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        issues.push({ path, message: `must be an object, not ${typeName(value)}` });
        return undefined;
      }
      const input = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      const before = issues.length;
      const at = (name: string): string => (path === '' ? name : `${path}.${name}`);
      for (const [name, field] of Object.entries(fields)) {
        const v = input[name];
        if (v === undefined || v === null) {
          if (!field.optional) issues.push({ path: at(name), message: 'is required' });
          else if (field.default !== undefined) out[name] = structuredClone(field.default);
          continue;
        }
        const checked = field.schema.check(v, at(name), issues);
        if (checked !== undefined) out[name] = checked;
      }
      if (options.allowUnknown) {
        for (const [name, v] of Object.entries(input)) if (!known.includes(name)) out[name] = v;
      } else {
        for (const name of Object.keys(input)) {
          if (!known.includes(name)) {
            const near = known.find((k) => k.toLowerCase() === name.toLowerCase());
            issues.push({
              path: at(name),
              message: `is not a known field${near ? `; did you mean "${near}"?` : `; known fields: ${known.join(', ')}`}`,
            });
          }
        }
      }
      return issues.length === before ? (out as ObjectOf<F>) : undefined;
    },
  };
}
