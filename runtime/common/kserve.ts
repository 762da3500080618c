// What a device and `dyno serve` share of the Open Inference Protocol (KServe v2 REST, with
// Triton's binary tensor data extension; the server's side is runtime/cloud/kserve.ts, the
// device's runtime/device/kserve-client.ts, the tables docs/serving.md):
//
//   a bundle's KServe models, one per cut the cloud can start from:
//     NAME          the input cut (NAME = manifest.model.name)
//     NAME.c<id>    an inner cut
//
//   a binary response:  JSON header | output 0's bytes | output 1's bytes | ...
//                       `Inference-Header-Content-Length` = the JSON's length in bytes
//
//   a response's `parameters` carry the server's timing of the request (ServerTiming):
//     dyno_queue_ms, dyno_decode_ms, dyno_segment_ms, dyno_cloud_ms (= decode + segments / rows),
//     dyno_total_ms, and dyno_batch_rows (rows in the run: 1 alone, more when batched)
// Browser-safe.
import * as z from "zod";
import type { Cut } from "./manifest.js";

/** The header giving the JSON part's length in a binary request or response (lower case, as Node reads it). */
export const KSERVE_HEADER_LENGTH = "inference-header-content-length";

/** The KServe model that starts at `cut`. */
export function kserveModelName(model: string, cut: Pick<Cut, "id" | "kind">): string {
  return cut.kind === "input" ? model : `${model}.c${cut.id}`;
}

/** The response parameter with the rows of the run a request was in (ServerTiming.rows; 1: alone). */
export const KSERVE_BATCH_ROWS = "dyno_batch_rows";

/** The response parameters that carry the server's timing, by ServerTiming field. */
export const KSERVE_TIMING = {
  queueMs: "dyno_queue_ms",
  decodeMs: "dyno_decode_ms",
  segmentMs: "dyno_segment_ms",
  cloudMs: "dyno_cloud_ms",
  totalMs: "dyno_total_ms",
} as const;

const Param = z.union([z.string(), z.number(), z.boolean()]);

export const KServeOutput = z.object({
  name: z.string(),
  datatype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  parameters: z.record(z.string(), Param).optional(),
  data: z.array(z.unknown()).optional(),
});

/** An infer response's JSON (the part before the binary outputs). */
export const KServeInferResponse = z.object({
  model_name: z.string(),
  model_version: z.string().optional(),
  id: z.string().optional(),
  parameters: z.record(z.string(), Param).optional(),
  outputs: z.array(KServeOutput),
});
export type KServeInferResponse = z.infer<typeof KServeInferResponse>;
