// Counters, gauges and histograms rendered in the Prometheus text exposition format (0.0.4).
// Written by hand rather than with prom-client: the server needs five metrics and one render
// function, not a global registry with process collectors; this is the whole of it.

type Labels = Record<string, string>;

const escapeLabel = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const labelText = (l: Labels) => {
  const keys = Object.keys(l);
  return keys.length ? `{${keys.map((k) => `${k}="${escapeLabel(l[k]!)}"`).join(",")}}` : "";
};
const num = (x: number) => (Number.isFinite(x) ? String(x) : x > 0 ? "+Inf" : x < 0 ? "-Inf" : "NaN");

interface Metric {
  render(): string[];
}

/** A counter or gauge with labels; series appear once touched. */
export class Series implements Metric {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge",
  ) {}

  add(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const s = this.values.get(key);
    if (s) s.value += by;
    else this.values.set(key, { labels, value: by });
  }

  set(labels: Labels, value: number): void {
    this.values.set(labelText(labels), { labels, value });
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    if (this.values.size === 0 && this.type === "gauge") lines.push(`${this.name} 0`);
    for (const s of this.values.values()) lines.push(`${this.name}${labelText(s.labels)} ${num(s.value)}`);
    return lines;
  }
}

/** A histogram without labels: cumulative buckets, sum and count. */
export class Histogram implements Metric {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {
    this.counts = buckets.map(() => 0);
  }

  observe(x: number): void {
    this.sum += x;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (x <= this.buckets[i]!) this.counts[i]!++;
  }

  render(): string[] {
    return [
      `# HELP ${this.name} ${this.help}`,
      `# TYPE ${this.name} histogram`,
      ...this.buckets.map((b, i) => `${this.name}_bucket{le="${num(b)}"} ${this.counts[i]}`),
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${num(this.sum)}`,
      `${this.name}_count ${this.count}`,
    ];
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];

  counter(name: string, help: string): Series {
    return this.push(new Series(name, help, "counter"));
  }

  gauge(name: string, help: string): Series {
    return this.push(new Series(name, help, "gauge"));
  }

  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    return this.push(new Histogram(name, help, buckets));
  }

  /** The exposition text, content type `text/plain; version=0.0.4`. */
  render(): string {
    return `${this.metrics.flatMap((m) => m.render()).join("\n")}\n`;
  }

  private push<T extends Metric>(m: T): T {
    this.metrics.push(m);
    return m;
  }
}
