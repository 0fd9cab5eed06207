// Package clock holds the real-time defaults that packages taking an
// injected clock fall back to. Library code receives its clock and its
// sleep as fields; only these defaults touch the wall clock.
package clock
