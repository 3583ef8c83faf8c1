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
	if cert, isCert := key.(*gossh.Certificate); isCert {
		user, ok = s.certUser(cert, remote)
	} else {
		user, ok = s.conf().UserByKey(key)
	}
	if !ok {
		return "", false
	}
	p, ok := s.conf().Project(login)
	if !ok || !p.IsMember(user) {
		return "", false
	}
	return user, true
}

// precheckKey answers the client's "would this key do?" queries. It grants
// nothing by itself: VerifiedPublicKeyCallback decides after the signature.
func (s *Server) precheckKey(ctx ssh.Context, key ssh.PublicKey) bool {
	_, ok := s.authorize(ctx.User(), key, ctx.RemoteAddr())
	if !ok {
		s.Metrics.keyRefused()
		s.log().Info("key refused", "remote", ctx.RemoteAddr().String(), "login", ctx.User(),
			"fingerprint", gossh.FingerprintSHA256(key))
	}
	return ok
}

func (s *Server) serverConfig(ctx ssh.Context) *gossh.ServerConfig {
	cfg := &gossh.ServerConfig{
		MaxAuthTries: s.conf().Server.MaxAuthTries,
		VerifiedPublicKeyCallback: func(meta gossh.ConnMetadata, key gossh.PublicKey, _ *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			user, ok := s.authorize(meta.User(), key, meta.RemoteAddr())
			if !ok {
				return nil, errDenied
			}
			if st := stateOf(ctx); st != nil {
				st.authenticated()
			}
			// A fresh Permissions: the one gliderlabs passes in is shared by
			// every key the client asked about.
			return &gossh.Permissions{Extensions: map[string]string{
				extUser:    user,
				extProject: meta.User(),
				extKey:     gossh.FingerprintSHA256(key),
			}}, nil
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
// critical option we do not enforce, source-address honoured. The user is
// the first principal that names a configured user.
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
	checker := gossh.CertChecker{SupportedCriticalOptions: []string{"source-address"}}
	for _, p := range cert.ValidPrincipals {
		if _, known := cfg.Users[p]; !known {
			continue
		}
		if err := checker.CheckCert(p, cert); err != nil {
			s.log().Info("certificate refused", "key_id", cert.KeyId, "principal", p, "err", err)
			return "", false
		}
		if !sourceAddressAllows(cert.CriticalOptions["source-address"], remote) {
			s.log().Info("certificate refused: source-address", "key_id", cert.KeyId, "remote", remote.String())
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
