// User metrics: `--metric ./my-metric.js[:key=value,...]`. The module's default export is a Metric
// (spec optional) or a function (options, ctx) => Metric | Promise<Metric>; see
// docs/examples/my-metric.js. The result is checked field by field here, and wrapped so that its
// spec is the path as given plus the options (what the manifest stores and verify loads again)
// and so that a bad stats() result names the module instead of corrupting a sum.
import { access } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { DynoError, UsageError } from "../../../runtime/common/errors.js";
import type { Metric, MetricContext, MetricFactory, UserMetric } from "./types.js";

const FIELDS: [keyof UserMetric, "string" | "boolean" | "function"][] = [
  ["name", "string"],
  ["unit", "string"],
  ["higherIsBetter", "boolean"],
  ["reference", "function"],
  ["stats", "function"],
  ["value", "function"],
];

export async function loadUserMetric(path: string, options: ReadonlyMap<string, string>, ctx: MetricContext): Promise<Metric> {
  const file = isAbsolute(path) ? path : resolve(ctx.baseDir, path);
  try {
    await access(file);
  } catch {
    throw new UsageError(`metric module "${path}" not found (looked for ${file})`);
  }
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (e) {
    throw new UsageError(`cannot load metric module "${path}": ${(e as Error).message}`, { cause: e });
  }
  const exported = mod.default;
  let made: unknown;
  if (typeof exported === "function") {
    try {
      made = await (exported as MetricFactory)(Object.fromEntries(options), ctx);
    } catch (e) {
      if (e instanceof DynoError) throw e;
      throw new UsageError(`metric module "${path}": ${(e as Error).message}`, { cause: e });
    }
  } else if (exported !== null && typeof exported === "object") {
    if (options.size > 0) {
      throw new UsageError(`metric module "${path}" exports a Metric object, which takes no options (given: ${[...options.keys()].join(", ")}); export a function (options, ctx) => Metric to accept options`);
    }
    made = exported;
  } else {
    throw new UsageError(`metric module "${path}" has no default export of a Metric or a function (options, ctx) => Metric`);
  }
  const m = checkMetric(made, path);
  const spec = options.size === 0 ? path : `${path}:${[...options].map(([k, v]) => `${k}=${v}`).join(",")}`;
  return {
    name: m.name,
    spec,
    unit: m.unit,
    higherIsBetter: m.higherIsBetter,
    reference: (outputs, label) => m.reference(outputs, label),
    stats(outputs, reference, label) {
      const s = m.stats(outputs, reference, label);
      if (!Array.isArray(s) || !s.every((x) => typeof x === "number")) throw new DynoError(`metric module "${path}": stats() must return an array of numbers, got ${describe(s)}`);
      return s;
    },
    value: (sum, count) => {
      const v = m.value(sum, count);
      if (typeof v !== "number") throw new DynoError(`metric module "${path}": value() must return a number, got ${describe(v)}`);
      return v;
    },
  };
}

function checkMetric(made: unknown, path: string): UserMetric {
  if (made === null || typeof made !== "object") throw new UsageError(`metric module "${path}" made ${describe(made)}, not a Metric object`);
  const obj = made as Record<string, unknown>;
  const wrong = FIELDS.filter(([key, type]) => typeof obj[key] !== type).map(([key, type]) => `${key} (${type}${key in obj ? `, got ${typeof obj[key]}` : ", missing"})`);
  if (wrong.length > 0) throw new UsageError(`metric module "${path}" does not make a valid Metric: ${wrong.join("; ")}`);
  return made as UserMetric;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array with non-numbers";
  return typeof v;
}
