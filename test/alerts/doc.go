// Package alerts tests the chart's monitoring: every alert parses with Prometheus's rule parser,
// fires on synthetic series showing its problem and not on healthy ones, and links a runbook in
// docs/operations.md; every dashboard query parses and reads documented series.
package alerts
