package gateway

import (
	"bytes"
	"errors"
	"net"
	"strings"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// Permission extensions set once a key is verified. Channel handlers read
// them from the ServerConn, never from values a callback left in the
// connection context (CVE-2024-45337: PublicKeyCallback may run for keys the
// client never proved it holds).
const (
	extUser    = "sygaldry-user"
	extProject = "sygaldry-project"
	extKey     = "sygaldry-key"
)

var errDenied = errors.New("permission denied")

// authorize maps a key (or certificate) and login name to (user, project),
// or fails. Unknown keys, unknown projects and non-members all fail the same
// way, so a probe learns nothing about which projects exist.
func (s *Server) authorize(login string, key gossh.PublicKey, remote net.Addr) (user string, ok bool) {
	g, ok := s.authorizeKey(login, key, remote)
	return g.user, ok
}

// grant is what an accepted key or certificate gives: a user, and what the
// key's options or the certificate's extensions take away (permits.go).
type grant struct {
	user string
	restrictions
}

// authorizeKey is authorize with the key's restrictions. A revoked key or
// certificate (server.revoked_keys) is refused first; for a plain key, the
// first of its lines whose from= and expiry-time admit the connection
// decides, as sshd reads authorized_keys.
func (s *Server) authorizeKey(login string, key gossh.PublicKey, remote net.Addr) (grant, bool) {
	cfg := s.conf()
	if cfg.Revoked(key) {
		s.prelog().Info("key refused: revoked", "remote", remote.String(), "fingerprint", gossh.FingerprintSHA256(key))
		return grant{}, false
	}
	var g grant
	if cert, isCert := key.(*gossh.Certificate); isCert {
		user, ok := s.certUser(cert, remote)
		if !ok {
			return grant{}, false
		}
		g = grant{user, certRestrictions(cert)}
	} else {
		found := false
		for _, ak := range cfg.AuthorizedKeys(key) {
			if ok, why := keyLineAllows(ak.Options, remote.String()); !ok {
				s.prelog().Info("key line refused", "remote", remote.String(), "user", ak.User,
					"fingerprint", gossh.FingerprintSHA256(key), "reason", why)
				continue
			}
			g, found = grant{ak.User, keyRestrictions(ak.Options)}, true
			break
		}
		if !found {
			return grant{}, false
		}
	}
	p, ok := cfg.Project(login)
	if !ok || !p.IsMember(g.user) {
		return grant{}, false
	}
	return g, true
}

// precheckKey answers the client's "would this key do?" queries. It grants
// nothing by itself: VerifiedPublicKeyCallback decides after the signature.
func (s *Server) precheckKey(ctx ssh.Context, key ssh.PublicKey) bool {
	_, ok := s.authorize(ctx.User(), key, ctx.RemoteAddr())
	if !ok {
		s.metrics.keyRefused()
		s.prelog().Info("key refused", "remote", ctx.RemoteAddr().String(), "login", ctx.User(),
			"fingerprint", gossh.FingerprintSHA256(key))
	}
	return ok
}

func (s *Server) serverConfig(ctx ssh.Context) *gossh.ServerConfig {
	cfg := &gossh.ServerConfig{
		MaxAuthTries: s.conf().Server.MaxAuthTries,
		VerifiedPublicKeyCallback: func(meta gossh.ConnMetadata, key gossh.PublicKey, _ *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			g, ok := s.authorizeKey(meta.User(), key, meta.RemoteAddr())
			if !ok {
				return nil, errDenied
			}
			if st := stateOf(ctx); st != nil {
				st.authenticated()
			}
			// A fresh Permissions: the one gliderlabs passes in is shared by
			// every key the client asked about.
			ext := map[string]string{
				extUser:    g.user,
				extProject: meta.User(),
				extKey:     gossh.FingerprintSHA256(key),
			}
			g.record(ext)
			return &gossh.Permissions{Extensions: ext}, nil
		},
	}
	cfg.Ciphers = s.conf().Server.Ciphers
	return cfg
}

// acceptConn (the handshake slots, kex_timeout, login_grace_time) is in
// prelogin.go.

type connStateKey struct{}

func stateOf(ctx ssh.Context) *connState {
	st, _ := ctx.Value(connStateKey{}).(*connState)
	return st
}

// certUser checks a user certificate like sshd's TrustedUserCAKeys: signed
// by a trusted CA, a user (not host) certificate, within its validity, no
// critical option we do not enforce (source-address is checked here,
// force-command in permits.go; verify-required is refused), source-address
// honoured. The user is the first principal that names a configured user.
func (s *Server) certUser(cert *gossh.Certificate, remote net.Addr) (string, bool) {
	cfg := s.conf()
	if cert.CertType != gossh.UserCert {
		return "", false
	}
	trusted := false
	for _, ca := range cfg.UserCAs() {
		if bytes.Equal(ca.Marshal(), cert.SignatureKey.Marshal()) {
			trusted = true
			break
		}
	}
	if !trusted {
		return "", false
	}
	checker := gossh.CertChecker{SupportedCriticalOptions: []string{"source-address", "force-command"}}
	for _, p := range cert.ValidPrincipals {
		if _, known := cfg.Users[p]; !known {
			continue
		}
		if err := checker.CheckCert(p, cert); err != nil {
			s.prelog().Info("certificate refused", "key_id", cert.KeyId, "principal", p, "err", err)
			return "", false
		}
		if !sourceAddressAllows(cert.CriticalOptions["source-address"], remote) {
			s.prelog().Info("certificate refused: source-address", "key_id", cert.KeyId, "remote", remote.String())
			return "", false
		}
		return p, true
	}
	return "", false
}

// sourceAddressAllows checks the source-address critical option: a comma
// separated list of addresses and CIDR blocks; empty allows any.
func sourceAddressAllows(list string, remote net.Addr) bool {
	if list == "" {
		return true
	}
	host, _, err := net.SplitHostPort(remote.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if _, n, err := net.ParseCIDR(a); err == nil {
			if n.Contains(ip) {
				return true
			}
		} else if other := net.ParseIP(a); other != nil && other.Equal(ip) {
			return true
		}
	}
	return false
}
