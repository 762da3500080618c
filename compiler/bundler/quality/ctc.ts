// Text recognisers (CRNN, PaddleOCR rec): greedy CTC decoding of a [1, T, C] output and the
// character error rate, in %, lower is better.
//
//   per time step: argmax over C  ->  3 3 0 5 5 5 0 0 3   (0 = blank)
//   collapse repeats              ->  3 0 5 0 3
//   drop blanks                   ->  3 5 3              ->  dict: "a c a"
//
// Against the label text (code points) when a sample has one, which needs the dictionary that maps
// classes to characters; against the float32 decode (class indices) otherwise, which does not.
// Dictionary convention (PaddleOCR ppocr_keys_v1.txt): one character per line, class i >= 1 is line
// i-1 (for blank 0; in general the k-th non-blank class is line k), and a model with one class more
// than blank + lines ends in " " (use_space_char).
import { readFile } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { DynoError, UsageError } from "../../../runtime/common/errors.js";
import type { Options } from "./spec.js";
import { formatDims, labelKind, outputOf } from "./tensor.js";
import type { Metric, MetricContext, SampleOutputs, SampleTensor } from "./types.js";

/** Greedy CTC decode of T steps of C scores (row-major [T, C]): class indices, repeats collapsed, blanks dropped. */
export function ctcGreedy(data: ArrayLike<number>, steps: number, classes: number, blank = 0): Int32Array {
  const out = new Int32Array(steps);
  let n = 0;
  let prev = -1;
  for (let t = 0, row = 0; t < steps; t++, row += classes) {
    let best = 0;
    let top = data[row]!;
    for (let c = 1; c < classes; c++) {
      const v = data[row + c]!;
      if (v > top) {
        top = v;
        best = c;
      }
    }
    if (best !== prev && best !== blank) out[n++] = best;
    prev = best;
  }
  return out.subarray(0, n);
}

/** Levenshtein distance (insertions, deletions, substitutions of one unit each), two rows of memory. */
export function editDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  let prev = new Int32Array(b.length + 1);
  let row = new Int32Array(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    row[0] = i;
    const ai = a[i - 1];
    for (let j = 1; j <= b.length; j++) {
      const sub = prev[j - 1]! + (ai === b[j - 1] ? 0 : 1);
      row[j] = Math.min(sub, prev[j]! + 1, row[j - 1]! + 1);
    }
    [prev, row] = [row, prev];
  }
  return prev[b.length]!;
}

/** A dictionary file's characters: one per line, line ends (\n or \r\n) removed, no trailing empty line. */
export function parseDictionary(text: string): string[] {
  const lines = text.split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** The character of every class (blank: ""), checking the class count against the dictionary. */
export function classChars(dict: readonly string[], classes: number, blank: number, dictName: string, output: string): string[] {
  if (classes !== dict.length + 1 && classes !== dict.length + 2) {
    throw new UsageError(
      `ctc dictionary "${dictName}" has ${dict.length} characters, so the model should have ${dict.length + 1} classes (blank + characters) or ${dict.length + 2} (with the space character), but output "${output}" has ${classes}`,
    );
  }
  const chars: string[] = [];
  let line = 0;
  for (let c = 0; c < classes; c++) {
    if (c === blank) {
      chars.push("");
      continue;
    }
    chars.push(line < dict.length ? dict[line]! : " ");
    line++;
  }
  return chars;
}

function codePoints(text: string): Int32Array {
  return Int32Array.from(text, (ch) => ch.codePointAt(0)!);
}

interface CtcReference {
  /** Label code points, or the float32 decode's class indices. */
  units: Int32Array;
  against: "label" | "float32";
}

export async function ctc(opts: Options, ctx: MetricContext): Promise<Metric<CtcReference>> {
  const output = opts.output(ctx);
  const blank = opts.number("blank", 0, { integer: true, min: 0 });
  const dictPath = opts.text("dict");
  opts.finish();
  if (ctx.labelled && dictPath === undefined) {
    throw new UsageError(`metric spec "${opts.spec}": ctc against label texts needs dict=FILE (the model's characters, one per line) to turn classes into text; without labels it compares with the float32 decode and needs no dictionary`);
  }
  const dict = dictPath === undefined ? null : await readDictionary(dictPath, ctx.baseDir, opts.spec);

  let chars: string[] | null = null;
  const shapeOf = (t: SampleTensor): [number, number] => {
    const d = t.dims;
    if (d.length === 2) return [d[0]!, d[1]!];
    if (d.length === 3 && d[0] === 1) return [d[1]!, d[2]!];
    throw new DynoError(`metric ctc reads a [1, T, C] output, but output "${output}" has dims ${formatDims(d)}`);
  };
  const decode = (outputs: SampleOutputs) => {
    const t = outputOf(outputs, output, "ctc");
    const [steps, classes] = shapeOf(t);
    if (blank >= classes) throw new UsageError(`metric spec "${opts.spec}": blank ${blank} is not a class of output "${output}" (${classes} classes)`);
    return { seq: ctcGreedy(t.data, steps, classes, blank), classes };
  };
  const charsFor = (classes: number): string[] => {
    if (!chars || chars.length !== classes) chars = classChars(dict!, classes, blank, dictPath!, output);
    return chars;
  };
  const text = (seq: Int32Array, classes: number): Int32Array => {
    const table = charsFor(classes);
    let s = "";
    for (const c of seq) s += table[c]!;
    return codePoints(s);
  };

  return {
    name: "ctc",
    spec: opts.canonical(),
    unit: "% CER",
    higherIsBetter: false,
    reference(outputs, label) {
      if (label === null) return { units: decode(outputs).seq.slice(), against: "float32" };
      if (typeof label !== "string") throw new DynoError(`metric ctc needs a text label per sample, got ${labelKind(label)}`);
      if (!dict) throw new UsageError(`metric spec "${opts.spec}": ctc against label texts needs dict=FILE`);
      charsFor(decode(outputs).classes); // a dictionary that does not fit the model fails here, on the float32 run
      return { units: codePoints(label), against: "label" };
    },
    stats(outputs, reference) {
      const { seq, classes } = decode(outputs);
      const got = reference.against === "label" ? text(seq, classes) : seq;
      return [editDistance(got, reference.units), reference.units.length];
    },
    // An empty reference set still scores its spurious characters: 100 % per character.
    value: (sum) => (100 * sum[0]!) / Math.max(sum[1]!, 1),
  };
}

async function readDictionary(path: string, baseDir: string, spec: string): Promise<string[]> {
  const file = isAbsolute(path) ? path : resolve(baseDir, path);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new UsageError(`metric spec "${spec}": cannot read ctc dictionary "${path}" (${file}): ${(e as Error).message}`, { cause: e });
  }
  const dict = parseDictionary(text);
  if (dict.length === 0) throw new UsageError(`metric spec "${spec}": ctc dictionary "${path}" is empty`);
  return dict;
}
