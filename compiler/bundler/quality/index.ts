// Accuracy metrics for compile's profiling and verify (docs/metrics.md). Re-exports only.
export { defaultMetricSpec, loadMetric, metricDrop } from "./load.js";
export type { Label, Metric, MetricContext, MetricFactory, SampleOutputs, SampleTensor, TextBox, UserMetric } from "./types.js";
