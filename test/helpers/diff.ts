// Deep equality for decoded protobuf plain objects that says where two values first differ
// ("$.graph.node[3].attribute[0].i: 9223372036854775807 vs 9223372036854775806"), so a failing
// round trip points at the field instead of dumping two megabyte-sized objects.

/** The path and values where `a` and `b` first differ, or undefined when they are equal. */
export function firstDifference(a: unknown, b: unknown, path = "$"): string | undefined {
  if (Object.is(a, b)) return undefined;
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    if (a.length !== b.length) return `${path}: ${a.length} bytes vs ${b.length} bytes`;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `${path}[${i}]: byte ${a[i]} vs ${b[i]}`;
    return undefined;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const d = firstDifference(a[i], b[i], `${path}[${i}]`);
      if (d) return d;
    }
    return a.length === b.length ? undefined : `${path}: ${a.length} items vs ${b.length} items`;
  }
  if (isRecord(a) && isRecord(b) && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) {
      if (!(k in b)) return `${path}.${k}: present vs absent`;
      if (!(k in a)) return `${path}.${k}: absent vs present`;
      const d = firstDifference(a[k], b[k], `${path}.${k}`);
      if (d) return d;
    }
    return undefined;
  }
  return `${path}: ${show(a)} vs ${show(b)}`;
}

/** Throws naming the first differing path when `actual` and `expected` are not deeply equal. */
export function assertSame(actual: unknown, expected: unknown, what: string): void {
  const d = firstDifference(actual, expected);
  if (d) throw new Error(`${what}: differs at ${d}`);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null;
}

function show(x: unknown): string {
  if (typeof x === "bigint") return `${x}n`;
  if (x instanceof Uint8Array) return `<${x.length} bytes>`;
  if (typeof x === "object" && x !== null) return Array.isArray(x) ? `[array ${x.length}]` : "{object}";
  return JSON.stringify(x) ?? String(x);
}
