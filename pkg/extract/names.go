package extract

import (
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// cleanName checks an entry name and returns it without the trailing
// slash a directory may have, or the reason it is refused.
func cleanName(name string, isDir bool) (string, string) {
	if isDir && len(name) > 1 {
		name = strings.TrimSuffix(name, "/")
	}
	if reason := checkChars(name, "name"); reason != "" {
		return "", reason
	}
	if path.IsAbs(name) {
		return "", "absolute path"
	}
	for c := range strings.SplitSeq(name, "/") {
		if c == ".." {
			return "", "path has a .. component"
		}
		if len(c) > maxComponent {
			return "", "path component longer than 255 bytes"
		}
	}
	if name == "." || path.Clean(name) != name {
		return "", "not a clean relative path (expected a form like a/b, without ./, // or a trailing slash)"
	}
	return name, ""
}

// checkTarget checks the target of symlink name, lexically: the link's
// directory joined with the target must stay inside the root.
func checkTarget(name, target string) string {
	if reason := checkChars(target, "symlink target"); reason != "" {
		return reason
	}
	if path.IsAbs(target) {
		return "symlink to absolute path " + strconv.Quote(target)
	}
	if j := path.Join(path.Dir(name), target); j == ".." || strings.HasPrefix(j, "../") {
		return "symlink to " + strconv.Quote(target) + " points outside the directory"
	}
	return ""
}

func checkChars(s, what string) string {
	switch {
	case s == "":
		return "empty " + what
	case len(s) > maxName:
		return what + " longer than 4095 bytes"
	case !utf8.ValidString(s):
		return what + " is not valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return what + " contains NUL"
	case strings.IndexByte(s, '\\') >= 0:
		return what + " contains a backslash"
	}
	return ""
}
