// What `dyno serve` writes to its log, made safe to write under attack.
//
// Escaping: request-derived text (variant and tensor names, URLs, error messages quoting them)
// reaches the log. A newline in a name would forge a log line and an ESC sequence would drive the
// operator's terminal, so every control character is written as its JSON escape, and a line is
// capped in length.
//
// Rate limiting: every refused request used to write one synchronous stderr line (4,700 lines/s
// from one client without a token). Per category (an error kind), the first `burst` lines of an
// interval are written as they come; the rest are counted, with their remote addresses, and one
// summary line per category is written when the interval ends:
//
//   dyno serve: 495 unauthorized requests from 3 addresses in the last 10 s (not logged one by one)
//
// Pure: the caller passes the time, and calls flush() from a timer.

/** Longest log line written, in characters, before the "... (N more characters)" tail. */
export const MAX_LOG_CHARS = 2000;

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/** Control characters (C0, DEL, C1, U+2028/2029) as JSON escapes; at most `max` characters kept. */
export function escapeLogText(text: string, max = MAX_LOG_CHARS): string {
  const cut = text.length > max ? text.slice(0, max) : text;
  const escaped = cut.replace(CONTROL, (ch) => {
    const json = JSON.stringify(ch);
    // JSON's two-character escapes (\n, \t, ...) where it has one, \uXXXX for the rest.
    return json.length === 4 ? json.slice(1, -1) : `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
  return text.length > max ? `${escaped}... (${text.length - max} more characters)` : escaped;
}

export interface LogLimiterOptions {
  /** Lines per category written as they come in each interval. */
  burst: number;
  intervalMs: number;
  emit: (line: string) => void;
}

interface Window {
  start: number;
  written: number;
  suppressed: number;
  addresses: Set<string>;
}

/** Caps on distinct addresses remembered per summary (the count stays exact below it). */
const MAX_ADDRESSES = 10_000;

export class LogLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(private readonly o: LogLimiterOptions) {}

  /**
   * One event of `category` (a plural noun for the summary: "unauthorized requests") from
   * `address`: its line is written, or counted for the summary.
   */
  note(category: string, address: string, line: string, now: number): void {
    let w = this.windows.get(category);
    if (w && now - w.start >= this.o.intervalMs) {
      this.summarise(category, w);
      w = undefined;
    }
    if (!w) this.windows.set(category, (w = { start: now, written: 0, suppressed: 0, addresses: new Set() }));
    if (w.written < this.o.burst) {
      w.written++;
      this.o.emit(line);
      return;
    }
    w.suppressed++;
    if (w.addresses.size < MAX_ADDRESSES) w.addresses.add(address);
  }

  /** Writes the summaries of the intervals that have ended by `now` and forgets them. */
  flush(now: number): void {
    for (const [category, w] of this.windows) {
      if (now - w.start >= this.o.intervalMs) this.summarise(category, w);
    }
  }

  private summarise(category: string, w: Window): void {
    this.windows.delete(category);
    if (w.suppressed === 0) return;
    const n = w.addresses.size;
    const seconds = Math.round(this.o.intervalMs / 100) / 10;
    this.o.emit(`dyno serve: ${w.suppressed} ${category} from ${n}${n >= MAX_ADDRESSES ? "+" : ""} address${n === 1 ? "" : "es"} in the last ${seconds} s (not logged one by one)`);
  }
}
