// Package tfoutput reads what the publisher needs from an applied
// infra-tf root (`terraform output -json`, through hashicorp/terraform-exec):
// the store URL, the region, the environment and the KMS signing key, so
// operators never copy bucket or key names by hand.
//
// terraform-exec starts terraform itself; it is the one child process of
// the programs that does not go through pkg/proc (the terraform binary is
// still found through proc.LookPath, never in the current directory).
// tfoutput only reads outputs: it must never run init, plan or apply.
package tfoutput
