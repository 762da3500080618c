// A user accuracy metric for dyno: mean absolute error of one output against the float32 model.
// Copy it, change the three functions, and pass it to compile (docs/metrics.md):
//
//   dyno compile model.onnx -o model.dyno --metric ./my-metric.js --max-accuracy-drop 0.01
//   dyno compile model.onnx -o model.dyno --metric ./my-metric.js:output=logits
//
// dyno runs the float32 model once per calibration sample and calls reference() with its outputs;
// then, for every (cut, bits) variant, stats() with that variant's outputs; it sums the stats
// arrays over the samples and calls value() once with the sums. The drop of a variant is
// value(variant) - value(float32) here, because lower is better; variants whose drop exceeds
// --max-accuracy-drop (in this metric's unit) are not offered.
//
// Outputs are { name: { data: Float32Array, dims: number[] } }, batch dim 1. A label is null here
// unless the calibration data is labelled (a class number, a text, or text boxes).

/**
 * The default export may be a metric object, or (as here) a function of the spec's options
 * (`--metric ./my-metric.js:output=logits` gives { output: "logits" }) and of the context
 * ({ inputDims, outputs, labelled, baseDir }) that returns one.
 */
export default function meanAbsoluteError(options, ctx) {
  const accepted = ["output"];
  for (const key of Object.keys(options)) {
    if (!accepted.includes(key)) throw new Error(`unknown option "${key}" (accepted: ${accepted.join(", ")})`);
  }
  const output = options.output ?? ctx.outputs[0];
  if (!ctx.outputs.includes(output)) throw new Error(`output "${output}" is not an output of the model (outputs: ${ctx.outputs.join(", ")})`);

  return {
    name: "mae",
    unit: "mean abs error",
    higherIsBetter: false,

    // Keep a copy: the buffer may be reused for the next sample.
    reference: (outputs) => Float32Array.from(outputs[output].data),

    // Sums, not means: dyno adds these arrays over all samples.
    stats(outputs, reference) {
      const got = outputs[output].data;
      let sum = 0;
      for (let i = 0; i < got.length; i++) sum += Math.abs(got[i] - reference[i]);
      return [sum, got.length];
    },

    value: ([sum, values]) => (values === 0 ? 0 : sum / values),
  };
}
