// Shared ONNX test material: where the model corpora are, decoding to plain protobuf data, and
// small models built inline (an IR-9+ feature sampler, a runnable CNN, a large MatMul chain).
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildModel, node } from "../../compiler/ir/builder.js";
import { Model } from "../../compiler/ir/graph.js";
import { Tensor } from "../../compiler/ir/tensor.js";
import { ModelProto, PLAIN, type Plain } from "../../compiler/onnx/proto.js";
import { randomFloats as uniform } from "../../runtime/common/random.js";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const MODELS_DIR = join(REPO, "models");
export const EXTERNAL_FIXTURE = join(REPO, "test/data/external/model.onnx");

/** The ONNX backend test data of the Debian package libonnx-testdata. */
export const CORPUS_ROOT = "/usr/include/onnx/backend/test/data";
const CORPUS_SETS = ["node", "pytorch-converted", "pytorch-operator", "real", "simple"];

/** models/*.onnx, sorted. */
export function fixtureModels(): string[] {
  if (!existsSync(MODELS_DIR)) return [];
  return readdirSync(MODELS_DIR).filter((f) => f.endsWith(".onnx")).sort().map((f) => join(MODELS_DIR, f));
}

/** Every model.onnx of the libonnx-testdata corpus, or null when the package is not installed. */
export function corpusModels(): string[] | null {
  if (!existsSync(CORPUS_ROOT)) return null;
  const out: string[] = [];
  for (const set of CORPUS_SETS) {
    const dir = join(CORPUS_ROOT, set);
    if (!existsSync(dir)) continue;
    for (const test of readdirSync(dir).sort()) {
      const p = join(dir, test, "model.onnx");
      if (existsSync(p)) out.push(p);
    }
  }
  return out;
}

/** A ModelProto as plain data (int64 as strings, bytes as Uint8Array, absent fields absent). */
export function decodePlain(bytes: Uint8Array): Plain {
  return ModelProto.toObject(ModelProto.decode(bytes), PLAIN);
}

export function encodePlain(plain: Plain): Uint8Array {
  return ModelProto.encode(ModelProto.fromObject(plain)).finish();
}

const tempDirs: string[] = [];

/** A fresh directory under the OS temp dir, removed when the test process exits. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `dyno-${prefix}-`));
  if (!tempDirs.length) process.once("exit", () => tempDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  tempDirs.push(dir);
  return dir;
}

export { rng } from "../../runtime/common/random.js";

/** Uniform floats in [-scale, scale) (scale 0.1: weight-sized values). */
export function randomFloats(n: number, seed: number, scale = 0.1): Float32Array {
  return uniform(n, seed, scale);
}

export const INT64_MAX = "9223372036854775807";
export const INT64_MIN = "-9223372036854775808";

const floatType = (dims: (number | string)[]) => ({
  tensor_type: { elem_type: 1, shape: { dim: dims.map((d) => (typeof d === "number" ? { dim_value: String(d) } : { dim_param: d })) } },
});

/**
 * A ModelProto (plain data) using fields newer than ONNX 1.10 / IR 8 and encodings a careless
 * writer loses: node metadata_props and device_configurations, model configuration, graph and
 * tensor metadata_props, If branches reading an outer value, INT64_MAX/MIN, int64_data, float16
 * raw_data, and attributes explicitly set to their default (ONNX's and protobuf's).
 */
export function ir9ModelPlain(): Plain {
  const half = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7e00]).buffer); // 1, -2, 65504, 2^-24, NaN
  const boolScalar = { tensor_type: { elem_type: 9, shape: { dim: [] } } };
  return {
    ir_version: "11",
    opset_import: [{ domain: "", version: "23" }],
    producer_name: "dyno-test",
    model_version: INT64_MAX,
    metadata_props: [{ key: "purpose", value: "IR 9+ round trip" }],
    configuration: [{ name: "pair", num_devices: 2, device: ["cpu:0", "cpu:1"] }],
    graph: {
      name: "ir9",
      doc_string: "fields a round trip must keep",
      metadata_props: [{ key: "graph.key", value: "graph.value" }],
      initializer: [
        { name: "half", data_type: 10, dims: ["5"], raw_data: half, metadata_props: [{ key: "tensor.key", value: "tensor.value" }] },
        { name: "big", data_type: 7, dims: ["3"], int64_data: [INT64_MAX, INT64_MIN, "-1"] },
        { name: "axis0", data_type: 6, dims: [], int32_data: [0] },
      ],
      input: [
        { name: "cond", type: boolScalar },
        { name: "x", type: floatType(["n", 4]) },
      ],
      node: [
        {
          name: "branch",
          op_type: "If",
          input: ["cond"],
          output: ["y"],
          metadata_props: [{ key: "node.key", value: "node.value" }],
          device_configurations: [
            {
              configuration_id: "pair",
              pipeline_stage: 1,
              sharding_spec: [{ tensor_name: "y", device: ["0", "1"], sharded_dim: [{ axis: "0", simple_sharding: [{ dim_param: "n", num_shards: "2" }] }] }],
            },
          ],
          attribute: [
            { name: "then_branch", type: 5, g: { name: "then", node: [{ op_type: "Identity", input: ["x"], output: ["t"] }], output: [{ name: "t", type: floatType(["n", 4]) }] } },
            { name: "else_branch", type: 5, g: { name: "else", node: [{ op_type: "Neg", input: ["x"], output: ["e"] }], output: [{ name: "e", type: floatType(["n", 4]) }] } },
          ],
        },
        { name: "const_max", op_type: "Constant", output: ["c"], attribute: [{ name: "value_int", type: 2, i: INT64_MAX }] },
        { name: "cumsum", op_type: "CumSum", input: ["y", "axis0"], output: ["s"], domain: "", attribute: [{ name: "exclusive", type: 2, i: "0" }, { name: "reverse", type: 2, i: "0" }] },
        { name: "flatten", op_type: "Flatten", input: ["s"], output: ["f"], attribute: [{ name: "axis", type: 2, i: "1" }] },
      ],
      output: [
        { name: "f", type: floatType(["n", 4]) },
        { name: "c", type: { tensor_type: { elem_type: 7, shape: { dim: [] } } } },
      ],
    },
  };
}

/** A small runnable CNN, x[1,1,8,8] -> logits[1,10], with seeded float32 weights (2 of 4 over 1 KiB). */
export function smallCnn(seed = 7): Model {
  return buildModel({
    name: "small_cnn",
    inputs: { x: ["float32", [1, 1, 8, 8]] },
    initializers: [
      Tensor.fromFloat32("conv1.w", [8, 1, 3, 3], randomFloats(8 * 9, seed)),
      Tensor.fromFloat32("conv1.b", [8], randomFloats(8, seed + 1)),
      Tensor.fromFloat32("conv2.w", [16, 8, 3, 3], randomFloats(16 * 8 * 9, seed + 2)),
      Tensor.fromFloat32("fc.w", [10, 16 * 8 * 8], randomFloats(10 * 1024, seed + 3)),
    ],
    nodes: [
      node("Conv", ["x", "conv1.w", "conv1.b"], ["h1"], { pads: [1, 1, 1, 1] }),
      node("Relu", ["h1"], ["a1"]),
      node("Conv", ["a1", "conv2.w"], ["h2"], { pads: [1, 1, 1, 1] }),
      node("Flatten", ["h2"], ["flat"]),
      node("Gemm", ["flat", "fc.w"], ["logits"], { transB: 1 }),
    ],
    outputs: ["logits"],
  });
}

/** A chain of `layers` MatMul+Add(+Relu) of width `width`: layers*width*width float32 parameters. */
export function matmulChain(layers: number, width: number, seed = 1): Model {
  const initializers: Tensor[] = [];
  const nodes = [];
  let x = "x";
  for (let l = 0; l < layers; l++) {
    initializers.push(Tensor.fromFloat32(`fc${l}.w`, [width, width], randomFloats(width * width, seed + 2 * l, 1 / Math.sqrt(width))));
    initializers.push(Tensor.fromFloat32(`fc${l}.b`, [width], randomFloats(width, seed + 2 * l + 1)));
    nodes.push(node("MatMul", [x, `fc${l}.w`], [`mm${l}`]), node("Add", [`mm${l}`, `fc${l}.b`], [`z${l}`]));
    x = `z${l}`;
    if (l < layers - 1) {
      nodes.push(node("Relu", [x], [`a${l}`]));
      x = `a${l}`;
    }
  }
  return buildModel({ name: "matmul_chain", inputs: { x: ["float32", [1, width]] }, initializers, nodes, outputs: [x] });
}
