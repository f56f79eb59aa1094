// Package deploy holds what an operator needs to run pushrelay, and the tests
// that keep it in step with the code: the container image
// (deploy/Dockerfile), the Helm chart (deploy/helm/pushrelay), the systemd
// unit (deploy/systemd), the Grafana dashboard (deploy/grafana), the
// Prometheus alert rules (deploy/prometheus) and example configurations
// (deploy/examples). It has no code of its own.
package deploy
