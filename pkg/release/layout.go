package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/trust"
)

// MaxSigBytes caps a signature file.
const MaxSigBytes = 16 << 10

// Seqs lists the seqs of env's release manifests, ascending.
func Seqs(ctx context.Context, st store.Store, env string) ([]uint64, error) {
	keys, err := st.List(ctx, store.ReleasesPrefix(env))
	if err != nil {
		return nil, fmt.Errorf("listing releases of %s: %w", env, err)
	}
	var seqs []uint64
	for _, k := range keys {
		name := path.Base(k)
		if !strings.HasSuffix(name, ".yaml") || path.Dir(k)+"/" != store.ReleasesPrefix(env) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, ".yaml"), 10, 64)
		if err != nil || n == 0 {
			continue
		}
		seqs = append(seqs, n)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// LatestHint reads releases/<env>/latest. It is unsigned: use it only to
// find which signed release to read.
func LatestHint(ctx context.Context, st store.Store, env string) (uint64, error) {
	data, _, err := store.ReadAll(ctx, st, store.LatestKey(env), 64)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return 0, fmt.Errorf("no release has been published for environment %q in %s: %w", env, st, err)
		}
		return 0, err
	}
	return ParseHint(data)
}

// ParseHint reads the seq a latest hint names.
func ParseHint(data []byte) (uint64, error) {
	n, err := strconv.ParseUint(string(bytes.TrimSpace(data)), 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("the latest hint holds %q: expected a release seq", bytes.TrimSpace(data))
	}
	return n, nil
}

// ReadSigs reads the detached signature(s) of key: the .sig file holds one
// base64 signature per line (cosign reads the first).
func ReadSigs(ctx context.Context, st store.Store, key string) ([][]byte, error) {
	data, _, err := store.ReadAll(ctx, st, store.SigKey(key), MaxSigBytes)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if errors.Is(err, store.ErrTooLarge) {
		return nil, &trust.VerificationError{Check: "signature size", Expected: fmt.Sprintf("at most %d bytes", MaxSigBytes), Found: "more", Err: err}
	}
	if err != nil {
		return nil, err
	}
	return splitSigs(data), nil
}

// splitSigs splits a .sig file into its signature lines.
func splitSigs(data []byte) [][]byte {
	var sigs [][]byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			sigs = append(sigs, line)
		}
	}
	return sigs
}
