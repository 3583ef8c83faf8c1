package config

import (
	"fmt"
	"net"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// AuthorizedKey is one line of a [users.NAME] keys list: the key, its owner
// and the authorized_keys options in front of it (sshd(8), AUTHORIZED_KEYS
// FILE FORMAT).
type AuthorizedKey struct {
	User    string
	Key     gossh.PublicKey
	Options KeyOptions
}

// KeyOptions are the authorized_keys options the gateway implements, with
// sshd's meaning. An option it does not implement is refused when the config
// is loaded, never ignored.
type KeyOptions struct {
	// From is the from="pattern-list": the client's address must match it
	// (wildcards * and ?, CIDR, ! to negate). Empty: any address.
	From string
	// ForceCommand is set by command="...": every exec, shell and subsystem
	// request runs Command instead, with SSH_ORIGINAL_COMMAND set to what the
	// client asked.
	ForceCommand bool
	Command      string
	// Expiry is expiry-time="...": the key is refused from then on. Zero:
	// no expiry.
	Expiry time.Time
	// The no-* options, after restrict and the re-enabling pty,
	// port-forwarding and agent-forwarding options were applied in order.
	NoPTY             bool
	NoPortForwarding  bool
	NoAgentForwarding bool
}

// keyFlags are options without a value: what each one does to the options.
// x11-forwarding and user-rc (and their no- forms) are accepted as they
// are: the gateway never forwards X11 (x11-req is refused) and never runs
// ~/.ssh/rc, so they are satisfied whatever they say. no-touch-required
// only relaxes a check (FIDO user presence) the gateway does not add.
var keyFlags = map[string]func(*KeyOptions){
	"restrict": func(o *KeyOptions) {
		o.NoPTY, o.NoPortForwarding, o.NoAgentForwarding = true, true, true
	},
	"no-pty":              func(o *KeyOptions) { o.NoPTY = true },
	"pty":                 func(o *KeyOptions) { o.NoPTY = false },
	"no-port-forwarding":  func(o *KeyOptions) { o.NoPortForwarding = true },
	"port-forwarding":     func(o *KeyOptions) { o.NoPortForwarding = false },
	"no-agent-forwarding": func(o *KeyOptions) { o.NoAgentForwarding = true },
	"agent-forwarding":    func(o *KeyOptions) { o.NoAgentForwarding = false },
	"no-x11-forwarding":   func(*KeyOptions) {},
	"x11-forwarding":      func(*KeyOptions) {},
	"no-user-rc":          func(*KeyOptions) {},
	"user-rc":             func(*KeyOptions) {},
	"no-touch-required":   func(*KeyOptions) {},
}

// unsupportedKeyOptions are sshd options the gateway does not implement; a
// key line that uses one is refused at load, with the reason.
var unsupportedKeyOptions = map[string]string{
	"permitopen":      "per-key forwarding destinations are not supported; use no-port-forwarding or restrict",
	"permitlisten":    "per-key listen addresses are not supported; use no-port-forwarding or restrict",
	"environment":     "per-key environment is not supported; use [projects.NAME] env",
	"tunnel":          "tun forwarding is not supported",
	"principals":      "principals= belongs to cert-authority lines; use server.trusted_user_ca_keys",
	"cert-authority":  "CA keys go in server.trusted_user_ca_keys",
	"verify-required": "FIDO user verification is not enforced by the gateway",
}

// ParseKeyOptions interprets the options gossh.ParseAuthorizedKey returns
// for one line, as sshd does (names are case-insensitive, values are
// double-quoted with \" for a quote). An expiry-time in the past is not an
// error here: the key is refused at login.
func ParseKeyOptions(opts []string) (KeyOptions, error) {
	var o KeyOptions
	var seenFrom, seenCommand bool
	for _, raw := range opts {
		name, value, hasValue := strings.Cut(raw, "=")
		name = strings.ToLower(name)
		if !hasValue {
			if f, ok := keyFlags[name]; ok {
				f(&o)
				continue
			}
		}
		if why, ok := unsupportedKeyOptions[name]; ok {
			return KeyOptions{}, fmt.Errorf("option %q is not supported: %s", name, why)
		}
		if _, isFlag := keyFlags[name]; isFlag {
			return KeyOptions{}, fmt.Errorf("option %q takes no value", name)
		}
		switch name {
		case "from", "command", "expiry-time":
		default:
			return KeyOptions{}, fmt.Errorf("unknown option %q", name)
		}
		if !hasValue {
			return KeyOptions{}, fmt.Errorf("option %q needs a value (%s=\"...\")", name, name)
		}
		v, err := dequoteOption(value)
		if err != nil {
			return KeyOptions{}, fmt.Errorf("option %q: %w", name, err)
		}
		switch name {
		case "from":
			if seenFrom {
				return KeyOptions{}, fmt.Errorf("more than one from= option")
			}
			seenFrom = true
			if err := checkFromPatterns(v); err != nil {
				return KeyOptions{}, fmt.Errorf("from=%q: %w", v, err)
			}
			o.From = v
		case "command":
			if seenCommand {
				return KeyOptions{}, fmt.Errorf("more than one command= option")
			}
			seenCommand = true
			o.ForceCommand, o.Command = true, v
		case "expiry-time":
			t, err := ParseExpiryTime(v)
			if err != nil {
				return KeyOptions{}, fmt.Errorf("expiry-time=%q: %w", v, err)
			}
			// Like sshd, several expiry times mean the earliest.
			if o.Expiry.IsZero() || t.Before(o.Expiry) {
				o.Expiry = t
			}
		}
	}
	return o, nil
}

// dequoteOption undoes sshd's quoting of an option value: "..." with \" for
// a double quote; any other backslash stays as it is.
func dequoteOption(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' {
		return "", fmt.Errorf("value must be in double quotes")
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch {
		case v[i] == '\\' && i+1 < len(v) && v[i+1] == '"':
			b.WriteByte('"')
			i++
		case v[i] == '"':
			if i != len(v)-1 {
				return "", fmt.Errorf("text after the closing quote")
			}
			return b.String(), nil
		default:
			b.WriteByte(v[i])
		}
	}
	return "", fmt.Errorf("missing closing quote")
}

// ParseExpiryTime reads sshd's expiry-time: YYYYMMDD[HHMM[SS]], in the
// gateway's local time zone, or in UTC with a trailing Z.
func ParseExpiryTime(s string) (time.Time, error) {
	loc := time.Local
	if strings.HasSuffix(s, "Z") {
		s, loc = s[:len(s)-1], time.UTC
	}
	var layout string
	switch len(s) {
	case 8:
		layout = "20060102"
	case 12:
		layout = "200601021504"
	case 14:
		layout = "20060102150405"
	default:
		return time.Time{}, fmt.Errorf("want YYYYMMDD[HHMM[SS]][Z]")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("want YYYYMMDD[HHMM[SS]][Z]")
		}
	}
	t, err := time.ParseInLocation(layout, s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("want YYYYMMDD[HHMM[SS]][Z]: %w", err)
	}
	return t, nil
}

// checkFromPatterns refuses a from= list sshd would fail on at login: an
// empty entry, or an address with a bad mask length.
func checkFromPatterns(list string) error {
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimPrefix(p, "!")
		if p == "" {
			return fmt.Errorf("empty pattern")
		}
		if strings.Contains(p, "/") {
			if _, _, err := net.ParseCIDR(p); err != nil {
				return fmt.Errorf("bad address/mask %q", p)
			}
		}
	}
	return nil
}

// MatchFrom reports whether the client address ip matches a from= pattern
// list, as sshd's match_host_and_ip does with UseDNS off (its default): each
// entry is an address, a CIDR block, or a wildcard pattern (* and ?) matched
// against the address text; an entry starting with ! that matches refuses
// outright; otherwise one matching entry admits.
func MatchFrom(list string, ip net.IP) bool {
	if list == "" {
		return true
	}
	if ip == nil {
		return false
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	text := strings.ToLower(ip.String())
	matched := false
	for _, p := range strings.Split(list, ",") {
		neg := strings.HasPrefix(p, "!")
		p = strings.ToLower(strings.TrimPrefix(p, "!"))
		if p == "" {
			return false // sshd: an error in the list refuses
		}
		hit := false
		if strings.Contains(p, "/") {
			_, n, err := net.ParseCIDR(p)
			if err != nil {
				return false
			}
			hit = n.Contains(ip)
		} else if a := net.ParseIP(p); a != nil {
			hit = a.Equal(ip)
		} else {
			hit = wildcardMatch(p, text)
		}
		if hit {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}

// wildcardMatch is sshd's match_pattern: * matches any run, ? one character.
func wildcardMatch(pattern, s string) bool {
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && (pattern[px] == '?' || pattern[px] == s[sx]):
			px++
			sx++
		case px < len(pattern) && pattern[px] == '*':
			star, mark = px, sx
			px++
		case star >= 0:
			px = star + 1
			mark++
			sx = mark
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// parseKeyLine parses one [users.NAME] keys entry.
func parseKeyLine(user, line string) (AuthorizedKey, error) {
	pk, _, opts, rest, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return AuthorizedKey{}, fmt.Errorf("not an authorized_keys line: %v", err)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return AuthorizedKey{}, fmt.Errorf("one key per entry")
	}
	o, err := ParseKeyOptions(opts)
	if err != nil {
		return AuthorizedKey{}, err
	}
	return AuthorizedKey{User: user, Key: pk, Options: o}, nil
}
