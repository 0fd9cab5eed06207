package manifest

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/cohuron/deploy/pkg/strictyaml"
)

var (
	// secretNameRE matches variable names that hold secrets by convention.
	secretNameRE = regexp.MustCompile(`(?i)(SECRET|PASSWORD|PASSWD|PASSPHRASE|TOKEN|PRIVATE|CREDENTIAL|API_?KEY|ACCESS_?KEY|_KEY$|^KEY$)`)
	// secretValueREs match values that look like secrets whatever their name.
	secretValueREs = []*regexp.Regexp{
		regexp.MustCompile(`\b(AKIA|ASIA)[0-9A-Z]{16}\b`),   // AWS access key id
		regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY`), // PEM private key
		regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{30,}`),  // GitHub token
		regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{10,}\.eyJ`),  // JWT
	}
)

// checkValue reports a literal that is, or looks like, a secret, and a
// reference that is malformed. name is the variable it is assigned to.
func checkValue(at, name string, v Value) []strictyaml.Problem {
	if v.IsRef() {
		if strings.TrimSpace(v.Ref) == "" || strings.ContainsAny(v.Ref, " \t\n") {
			return []strictyaml.Problem{problem(at, "%s reference must be a non-empty name without spaces, found %q", v.RefKind, v.Ref)}
		}
		return nil
	}
	if why := literalSecret(name, v.Literal); why != "" {
		return []strictyaml.Problem{problem(at, "literal secret (%s); use a reference such as {ssm: /cohuron/<env>/%s}", why, strings.ToLower(name))}
	}
	return nil
}

// literalSecret says why a literal value looks like a secret, or "".
func literalSecret(name, val string) string {
	if val == "" {
		return ""
	}
	if secretNameRE.MatchString(name) {
		return "variable name " + name + " holds a secret"
	}
	for _, re := range secretValueREs {
		if re.MatchString(val) {
			return "value looks like a credential"
		}
	}
	if u, err := url.Parse(val); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			return "URL contains a password"
		}
	}
	return ""
}
