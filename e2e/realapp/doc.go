// Package realapp runs the deploy system against the real Cohuron app
// (../shared/cohuron-pmo.bundle): a host laid out by the Lambda deployer
// it replaces is adopted by manifests/prod.yaml as shipped (only paths and
// secret sources overridden), database included, then real commits of the
// app's history walk through it; the app's last 30 commits that touch db/
// replay through publish and agent once against one database (the
// declarative schema); the benchmark compares it with that deployer's
// host steps.
// Real pnpm, Node, PM2, PostgreSQL, Docker engine and MinIO; the compose
// services are stand-in images under their real names.
package realapp
