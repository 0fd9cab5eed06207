package main

import "time"

// flagSet is the part of *flag.FlagSet the option structs use.
type flagSet interface {
	StringVar(p *string, name, value, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
	DurationVar(p *time.Duration, name string, value time.Duration, usage string)
	Uint64Var(p *uint64, name string, value uint64, usage string)
}
