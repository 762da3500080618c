// One error hierarchy for everything dyno reports to a user. Messages name the bad thing
// (file, tensor, op, flag); the CLI prints `dyno: <message>` and exits non-zero.

export class DynoError extends Error {
  override name = "DynoError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A model file that cannot be read: not ONNX, truncated, missing external data, too large. */
export class ModelError extends DynoError {
  override name = "ModelError";
}

/** A graph that breaks an IR invariant (cycle, undefined input, duplicate name), or a pass that made one. */
export class GraphError extends DynoError {
  override name = "GraphError";
}

/** A model that is valid ONNX but uses something dyno does not support here. */
export class UnsupportedError extends DynoError {
  override name = "UnsupportedError";
}

/** Bad command-line usage or bad options passed to an API. */
export class UsageError extends DynoError {
  override name = "UsageError";
}
