// Package alerts tests the chart's Prometheus alerts: they parse with Prometheus's rule parser,
// each expression fires on synthetic series that show its problem and stays quiet on healthy
// ones, and each links a runbook section that exists in docs/operations.md.
package alerts
