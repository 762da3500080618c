// The `--metric` spec text: `NAME`, `NAME:key=value,key=value`, or `./file.js[:key=value,...]`.
// Options are read through one reader per spec, so every metric rejects unknown keys and bad
// values the same way (naming the spec, the key and what is accepted), and so the canonical spec
// stored in the manifest lists exactly the options that were set, in the metric's own order.
import { UsageError } from "../../../runtime/common/errors.js";
import type { MetricContext } from "./types.js";

export interface ParsedSpec {
  /** A built-in name, or the module path as given. */
  name: string;
  /** True when `name` is a path to a .js/.mjs user module. */
  module: boolean;
  /** The options, in the order given. */
  options: Map<string, string>;
}

// The lazy `.+?` stops at the first ".js"/".mjs" followed by ":" or the end, so option values
// may themselves be paths ending in .js (and a Windows drive's ":" stays in the path).
const MODULE_SPEC = /^(.+?\.m?js)(?::(.*))?$/s;

/** A built-in name before the first ":" wins, so `ctc:dict=keys.js` is not taken for a module path. */
export function parseSpec(spec: string, isBuiltin: (name: string) => boolean): ParsedSpec {
  const text = spec.trim();
  if (text === "") throw new UsageError(`empty --metric spec`);
  const colon = text.indexOf(":");
  const name = colon < 0 ? text : text.slice(0, colon);
  const mod = isBuiltin(name) ? null : MODULE_SPEC.exec(text);
  if (mod) return { name: mod[1]!, module: true, options: parseOptions(spec, mod[2] ?? "") };
  return { name, module: false, options: parseOptions(spec, colon < 0 ? "" : text.slice(colon + 1)) };
}

function parseOptions(spec: string, text: string): Map<string, string> {
  const out = new Map<string, string>();
  if (text.trim() === "") return out;
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part.trim() : part.slice(0, eq).trim();
    if (eq < 0 || key === "") throw new UsageError(`metric spec "${spec}": option "${part}" is not key=value`);
    if (out.has(key)) throw new UsageError(`metric spec "${spec}": option "${key}" is given twice`);
    out.set(key, part.slice(eq + 1).trim());
  }
  return out;
}

interface NumberRange {
  min?: number;
  max?: number;
  /** Strictly greater than this. */
  above?: number;
  integer?: boolean;
}

/** Reads one built-in metric's options; `finish()` rejects the keys nobody asked for. */
export class Options {
  private readonly accepted: string[] = [];
  private readonly set: [string, string][] = [];

  constructor(
    readonly spec: string,
    readonly metric: string,
    private readonly given: ReadonlyMap<string, string>,
  ) {}

  /** A string option, or undefined when not given. */
  text(key: string): string | undefined {
    this.accepted.push(key);
    const v = this.given.get(key);
    if (v === undefined) return undefined;
    if (v === "") throw this.bad(key, v, "a non-empty value");
    this.set.push([key, v]);
    return v;
  }

  number(key: string, fallback: number, range: NumberRange = {}): number {
    return this.optionalNumber(key, range) ?? fallback;
  }

  /** A number option, or undefined when not given. */
  optionalNumber(key: string, range: NumberRange = {}): number | undefined {
    this.accepted.push(key);
    const v = this.given.get(key);
    if (v === undefined) return undefined;
    const n = v === "" ? NaN : Number(v);
    const want = describeRange(range);
    if (!Number.isFinite(n)) throw this.bad(key, v, want);
    if (range.integer && !Number.isInteger(n)) throw this.bad(key, v, want);
    if (range.min !== undefined && n < range.min) throw this.bad(key, v, want);
    if (range.max !== undefined && n > range.max) throw this.bad(key, v, want);
    if (range.above !== undefined && n <= range.above) throw this.bad(key, v, want);
    this.set.push([key, String(n)]);
    return n;
  }

  /** A 0/1 switch (also true/false); not listed in the canonical spec (the caller folds it into the name). */
  flag(key: string): boolean {
    this.accepted.push(key);
    const v = this.given.get(key);
    if (v === undefined) return false;
    if (v === "1" || v === "true") return true;
    if (v === "0" || v === "false") return false;
    throw this.bad(key, v, "0 or 1");
  }

  /** `output=NAME`, checked against the model's outputs; the first output when not given. */
  output(ctx: MetricContext): string {
    const name = this.text("output");
    if (ctx.outputs.length === 0) throw new UsageError(`metric spec "${this.spec}": the model has no outputs to score`);
    if (name === undefined) return ctx.outputs[0]!;
    if (!ctx.outputs.includes(name)) throw new UsageError(`metric spec "${this.spec}": output "${name}" is not an output of the model (outputs: ${ctx.outputs.join(", ")})`);
    return name;
  }

  /** Throws on keys that were given but that this metric never read. */
  finish(): void {
    for (const key of this.given.keys()) {
      if (!this.accepted.includes(key)) {
        throw new UsageError(`metric spec "${this.spec}": unknown option "${key}" for ${this.metric} (accepted: ${this.accepted.join(", ")})`);
      }
    }
  }

  /** `name[:key=value,...]` with the options that were set, normalised, in reading order. */
  canonical(name: string = this.metric): string {
    return this.set.length === 0 ? name : `${name}:${this.set.map(([k, v]) => `${k}=${v}`).join(",")}`;
  }

  private bad(key: string, value: string, want: string): UsageError {
    return new UsageError(`metric spec "${this.spec}": option "${key}" of ${this.metric} must be ${want}, got "${value}"`);
  }
}

function describeRange(r: NumberRange): string {
  const kind = r.integer ? "an integer" : "a number";
  const low = r.above !== undefined ? `(${r.above}` : r.min !== undefined ? `[${r.min}` : null;
  const high = r.max !== undefined ? `${r.max}]` : null;
  if (low && high) return `${kind} in ${low}, ${high}`;
  if (low) return `${kind} ${low[0] === "(" ? ">" : ">="} ${low.slice(1)}`;
  if (high) return `${kind} <= ${r.max}`;
  return kind;
}
