// Package compose drives Docker Compose for the agent's compose step:
// Compose v2 (`docker compose`) or v1 (`docker-compose`), whichever the
// host has. It brings a project up, and reports and waits for the
// health of the project's containers, with their configuration hashes and
// images, and reads image IDs: from the Docker Engine API on its unix
// socket when the docker CLI would use that socket (engine.go: an idle
// poll starts no process), else through the docker CLI (contexts, tcp,
// ssh), the same for v1 and v2. Every command runs through proc with the
// client's environment.
//
// compose must never remove or force-recreate containers on its own: it
// never runs `down`, `rm`, `--force-recreate` or `--renew-anon-volumes`;
// `up -d` lets compose itself leave unchanged containers alone. It never
// pulls or builds images on its own beyond what `up` does, and never
// inherits the agent's environment.
package compose
