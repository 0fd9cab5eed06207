package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/cohuron/deploy/pkg/store"
)

// Run runs the suite against stores made by open; each call must return
// an empty store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"NotFound", testNotFound},
		{"ConditionalGet", testConditionalGet},
		{"PutReplaces", testPutReplaces},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentRace", testPutIfAbsentRace},
		{"List", testList},
		{"LargeMultipart", testLarge},
		{"UnknownSize", testUnknownSize},
		{"BadKeys", testBadKeys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func get(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key, "")
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return b
}

func put(t *testing.T, s store.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
}

func testRoundTrip(t *testing.T, s store.Store) {
	data := []byte("apiVersion: x\n")
	put(t, s, "releases/prod/1.yaml", data)
	if got := get(t, s, "releases/prod/1.yaml"); !bytes.Equal(got, data) {
		t.Fatalf("got %q, want %q", got, data)
	}
	info, err := s.Stat(context.Background(), "releases/prod/1.yaml")
	if err != nil || info.Size != int64(len(data)) || info.ETag == "" {
		t.Fatalf("Stat = %+v, %v; want size %d and an ETag", info, err, len(data))
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, _, err := s.Get(ctx, "releases/prod/latest", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, "bundles/x.tar.gz"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat missing: %v, want ErrNotFound", err)
	}
	keys, err := s.List(ctx, "releases/none/")
	if err != nil || len(keys) != 0 {
		t.Fatalf("List of empty prefix = %v, %v; want none", keys, err)
	}
}

func testConditionalGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	put(t, s, "releases/prod/latest", []byte("1\n"))
	rc, info, err := s.Get(ctx, "releases/prod/latest", "")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if _, _, err := s.Get(ctx, "releases/prod/latest", info.ETag); !errors.Is(err, store.ErrNotModified) {
		t.Fatalf("Get with current ETag: %v, want ErrNotModified", err)
	}
	put(t, s, "releases/prod/latest", []byte("2\n"))
	rc, info2, err := s.Get(ctx, "releases/prod/latest", info.ETag)
	if err != nil {
		t.Fatalf("Get with stale ETag: %v, want the new body", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "2\n" || info2.ETag == info.ETag {
		t.Fatalf("got %q etag %q (old %q), want new content and ETag", b, info2.ETag, info.ETag)
	}
}

func testPutReplaces(t *testing.T, s store.Store) {
	put(t, s, "status/prod/h1.json", []byte(`{"a":1}`))
	put(t, s, "status/prod/h1.json", []byte(`{"a":2}`))
	if got := get(t, s, "status/prod/h1.json"); string(got) != `{"a":2}` {
		t.Fatalf("got %s after replace", got)
	}
}

func testPutIfAbsent(t *testing.T, s store.Store) {
	ctx := context.Background()
	key := "releases/prod/7.yaml"
	if err := s.PutIfAbsent(ctx, key, bytes.NewReader([]byte("first")), 5); err != nil {
		t.Fatalf("first PutIfAbsent: %v", err)
	}
	err := s.PutIfAbsent(ctx, key, bytes.NewReader([]byte("second")), 6)
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second PutIfAbsent: %v, want ErrExists", err)
	}
	if got := get(t, s, key); string(got) != "first" {
		t.Fatalf("content after refused write = %q, want first", got)
	}
}

func testPutIfAbsentRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(fmt.Sprintf("writer %d", i))
			errs[i] = s.PutIfAbsent(ctx, "releases/race/1.yaml", bytes.NewReader(body), int64(len(body)))
		}()
	}
	wg.Wait()
	winners := 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
			if got := get(t, s, "releases/race/1.yaml"); string(got) != fmt.Sprintf("writer %d", i) {
				t.Fatalf("winner %d but stored %q", i, got)
			}
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d writers claimed the same key, want exactly 1", winners)
	}
}

func testList(t *testing.T, s store.Store) {
	for _, k := range []string{"releases/prod/2.yaml", "releases/prod/10.yaml", "releases/prod/2.yaml.sig", "releases/staging/1.yaml", "bundles/a.tar.gz"} {
		put(t, s, k, []byte(k))
	}
	keys, err := s.List(context.Background(), "releases/prod/")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"releases/prod/10.yaml", "releases/prod/2.yaml", "releases/prod/2.yaml.sig"}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Fatalf("List = %v, want %v", keys, want)
	}
}

func testLarge(t *testing.T, s store.Store) {
	data := make([]byte, 20<<20+12345) // over the multipart threshold
	rand.Read(data)
	put(t, s, "bundles/big.tar.gz", data)
	if got := get(t, s, "bundles/big.tar.gz"); !bytes.Equal(got, data) {
		t.Fatalf("large object differs after round trip (%d vs %d bytes)", len(got), len(data))
	}
}

func testUnknownSize(t *testing.T, s store.Store) {
	data := bytes.Repeat([]byte("x"), 1000)
	if err := s.Put(context.Background(), "bundles/stream.tar.gz", io.MultiReader(bytes.NewReader(data)), -1); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "bundles/stream.tar.gz"); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
}

func testBadKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, k := range []string{"", "/abs", "../up", "a/../../b", "a//b", "a/", "a\x00b"} {
		if err := s.Put(ctx, k, bytes.NewReader(nil), 0); err == nil {
			t.Errorf("Put(%q) succeeded, want a key error", k)
		}
		if _, _, err := s.Get(ctx, k, ""); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want a key error", k, err)
		}
	}
}
