// Package deploy is the Cohuron deploy system: a publisher that turns a git
// commit into a signed, reproducible release, and an agent that converges
// each host to it. The programs live in cmd/, the packages in pkg/.
package deploy
