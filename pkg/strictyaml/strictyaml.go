package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one finding in a document, tied to a line when one is known.
type Problem struct {
	File string `json:"file"`
	Line int    `json:"line,omitempty"` // 0 when unknown
	Path string `json:"path,omitempty"` // dotted field path such as spec.processes[0].port, when known
	Msg  string `json:"message"`
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is a list of problems found in one document.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Document is a decoded YAML document together with its node tree, kept so
// that later validation can point at the line of a field.
type Document struct {
	File string
	Root *yaml.Node // the document's top-level mapping
}

// Decode decodes data (named file in errors) into out, strictly. It returns
// the parsed document for line lookups, or an *Error.
func Decode(file string, data []byte, maxBytes int, out any) (*Document, error) {
	fail := func(line int, format string, args ...any) error {
		return &Error{Problems: []Problem{{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}}}
	}
	if maxBytes > 0 && len(data) > maxBytes {
		return nil, fail(0, "document is %d bytes, over the limit of %d bytes", len(data), maxBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fail(0, "document is empty")
	}

	// First pass: the node tree, to count documents and refuse aliases
	// before anything expands them.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // only comments
			return nil, fail(0, "document is empty")
		}
		return nil, yamlError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fail(extra.Line, "found a second YAML document; exactly one is allowed")
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(file, err)
	}
	if err := refuseNodes(file, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		line := doc.Line
		if len(doc.Content) > 0 {
			line = doc.Content[0].Line
		}
		return nil, fail(line, "top level must be a mapping")
	}

	// Second pass: typed decoding with unknown fields refused. yaml.v3
	// refuses duplicate keys on its own.
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return nil, yamlError(file, err)
	}
	return &Document{File: file, Root: doc.Content[0]}, nil
}

// MaxMappingKeys caps the entries of one mapping: yaml.v3 checks map keys
// for duplicates pairwise, so a 1 MiB mapping would take minutes.
const MaxMappingKeys = 4096

// coreTags are the explicit tags a document may carry; others (!!binary,
// local tags such as !vault) would change or silently drop meaning.
var coreTags = map[string]bool{"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true, "!!seq": true, "!!map": true}

// refuseNodes rejects, before anything expands or decodes them, anchors and
// aliases (alias bombs), merge keys (they hide duplicate keys), explicit
// non-core tags, null values and oversized mappings.
func refuseNodes(file string, n *yaml.Node) error {
	bad := func(n *yaml.Node, format string, args ...any) error {
		return &Error{Problems: []Problem{{File: file, Line: n.Line, Msg: fmt.Sprintf(format, args...)}}}
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return bad(n, "anchors and aliases are not allowed")
	}
	if n.Style&yaml.TaggedStyle != 0 && !coreTags[n.Tag] {
		return bad(n, "tag %s is not allowed", n.Tag)
	}
	if n.Kind == yaml.MappingNode {
		if len(n.Content)/2 > MaxMappingKeys {
			return bad(n, "mapping has %d keys, over the limit of %d", len(n.Content)/2, MaxMappingKeys)
		}
		for i := 0; i < len(n.Content); i += 2 {
			if n.Content[i].Tag == "!!merge" {
				return bad(n.Content[i], "merge keys (<<) are not allowed")
			}
		}
	}
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		// yaml.v3 decodes a null as the zero value without calling
		// UnmarshalYAML, so `JWT_SECRET:` would silently become "".
		for i, c := range n.Content {
			if c.Kind == yaml.ScalarNode && c.Tag == "!!null" && (n.Kind == yaml.SequenceNode || i%2 == 1) {
				return bad(c, "value is empty; write \"\" for an empty string, or leave the key out")
			}
		}
	}
	for _, c := range n.Content {
		if err := refuseNodes(file, c); err != nil {
			return err
		}
	}
	return nil
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// yamlError turns yaml.v3's errors ("yaml: line 3: ...", TypeError lists)
// into file:line problems.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	out := &Error{}
	for _, m := range msgs {
		p := Problem{File: file, Msg: m}
		if sm := lineRE.FindStringSubmatch(m); sm != nil {
			p.Line, _ = strconv.Atoi(sm[1])
			p.Msg = sm[2]
		}
		out.Problems = append(out.Problems, p)
	}
	return out
}

// Line returns the line of the node at path (for example
// "spec.processes[1].port"), or of the deepest ancestor that exists, so a
// missing field points at its parent.
func (d *Document) Line(path string) int {
	if d == nil || d.Root == nil {
		return 0
	}
	n := d.Root
	line := n.Line
	for _, part := range splitPath(path) {
		next := child(n, part)
		if next == nil {
			break
		}
		n = next
		line = n.Line
	}
	return line
}

// Problems turns path-keyed messages into sorted file:line problems.
func (d *Document) Problems(file string, byPath []Problem) *Error {
	if len(byPath) == 0 {
		return nil
	}
	out := &Error{}
	for _, p := range byPath {
		p.File = file
		p.Line = d.Line(p.Path)
		out.Problems = append(out.Problems, p)
	}
	sort.SliceStable(out.Problems, func(i, j int) bool { return out.Problems[i].Line < out.Problems[j].Line })
	return out
}

type pathPart struct {
	key   string
	index int // -1 for a key
}

func splitPath(path string) []pathPart {
	var parts []pathPart
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			continue
		}
		name, rest, _ := strings.Cut(seg, "[")
		if name != "" {
			parts = append(parts, pathPart{key: name, index: -1})
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			if i, err := strconv.Atoi(num); err == nil {
				parts = append(parts, pathPart{index: i})
			}
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return parts
}

func child(n *yaml.Node, p pathPart) *yaml.Node {
	switch {
	case p.index >= 0 && n.Kind == yaml.SequenceNode:
		if p.index < len(n.Content) {
			return n.Content[p.index]
		}
	case p.index < 0 && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == p.key {
				// Point at the value, or the key when the value is a
				// collection starting on a later line.
				if n.Content[i+1].Kind == yaml.ScalarNode {
					return n.Content[i+1]
				}
				v := *n.Content[i+1]
				if v.Line != n.Content[i].Line {
					v.Line = n.Content[i].Line
				}
				return &v
			}
		}
	}
	return nil
}
