package wire

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/wire/tls13"
)

// Startup packet request codes (the first int32 after the length).
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	protocolV3        = 3 << 16
)

// Defaults for StartupConfig.
const (
	DefaultMaxPacket      = 10 << 10 // PostgreSQL's MAX_STARTUP_PACKET_LENGTH is 10000
	DefaultStartupTimeout = 10 * time.Second
)

// StartupConfig configures the startup phase of one client connection.
type StartupConfig struct {
	// TLS answers SSLRequest with 'S' and this configuration; nil answers 'N'.
	// It also serves direct TLS connections (sslnegotiation=direct), which
	// must negotiate ALPN "postgresql": NextProtos must offer it, as
	// ServerTLSConfig's does. Without TLS they are refused with a TLS alert.
	TLS *tls.Config
	// RequireTLS rejects a StartupMessage sent without TLS, unless
	// AllowPlaintext (if set) returns true for the client's address.
	RequireTLS     bool
	AllowPlaintext func(remote net.Addr) bool
	// MaxPacket bounds a startup packet, length word included [DefaultMaxPacket].
	// The Backend in the result applies it to message bodies too.
	MaxPacket int
	// Timeout bounds the whole startup phase, TLS handshake included [DefaultStartupTimeout].
	Timeout time.Duration
}

// CancelKey identifies a session to cancel, as in BackendKeyData.
type CancelKey struct {
	ProcessID uint32
	SecretKey uint32
}

// StartupResult is what the startup phase learned. Exactly one of Cancel and
// Params is set.
type StartupResult struct {
	// Conn is the connection to use from now on: the TLS connection after an
	// upgrade, wrapped to return bytes the client pipelined after its
	// StartupMessage when there were any. Use TLS to know whether it is encrypted.
	Conn net.Conn
	// TLS is the TLS state, nil without TLS.
	TLS *tls.ConnectionState
	// TLSRecords names the record layer the session goes on with after the
	// TLS handshake: "tls13" (tdb's own) or "crypto_tls"; "" without TLS.
	TLSRecords string
	// ChannelBinding is the tls-server-end-point data of the certificate this
	// connection presented, for AuthenticateSCRAM; nil without TLS or when
	// the certificate's signature algorithm defines no binding.
	ChannelBinding []byte
	// Params holds the StartupMessage parameters ("user", "database", "options",
	// "application_name", …). "database" defaults to "user" as in PostgreSQL.
	// Protocol options ("_pq_.*") are not included: they were declined.
	Params map[string]string
	// Cancel is set for a CancelRequest; nothing else was read or written.
	Cancel *CancelKey
	// Backend speaks pgproto3 over Conn for the authentication phase. It never
	// reads past the end of a message, so a FrameReader on Conn can take over
	// after authentication without losing bytes.
	Backend *pgproto3.Backend
}

// User returns the "user" startup parameter.
func (r *StartupResult) User() string { return r.Params["user"] }

// Database returns the "database" startup parameter.
func (r *StartupResult) Database() string { return r.Params["database"] }

// Startup runs the startup phase of a client connection: SSLRequest (TLS
// upgrade) or a direct TLS handshake (the client's first bytes are its
// ClientHello), GSSENCRequest (declined), then a StartupMessage or a
// CancelRequest.
// The Timeout deadline covers the whole phase and is cleared on success.
//
// On error the connection is unusable. If the error carries a *PGError (see
// AsPGError), the client should get it: write it with WriteError to res.Conn,
// which is non-nil on every error and is the TLS connection after an upgrade.
// Other errors (I/O, timeout, ctx) mean the client is gone or silent: just close.
// On error the startup deadline is left in place, so writing the error cannot hang.
func Startup(ctx context.Context, conn net.Conn, cfg StartupConfig) (res *StartupResult, err error) {
	if cfg.MaxPacket <= 0 {
		cfg.MaxPacket = DefaultMaxPacket
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultStartupTimeout
	}
	res = &StartupResult{Conn: conn}
	if err := conn.SetDeadline(time.Now().Add(cfg.Timeout)); err != nil {
		return res, errors.Wrap(err, "set startup deadline")
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && ctx.Err() != nil {
			// The deadline was forced into the past: report why.
			if err == nil || !isPGError(err) {
				err = errors.Wrap(ctx.Err(), "startup")
			}
			return
		}
		if err == nil {
			err = errors.Wrap(res.Conn.SetDeadline(time.Time{}), "clear startup deadline")
		}
	}()

	s := startup{cfg: cfg, conn: conn, res: res}
	s.br = bufio.NewReaderSize(conn, startupBufferSize)
	if err := s.run(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// startupBufferSize holds most startup packets in one read.
const startupBufferSize = 4096

func isPGError(err error) bool { _, ok := AsPGError(err); return ok }

// startup is the state of one startup phase.
type startup struct {
	cfg     StartupConfig
	conn    net.Conn // the raw connection
	br      *bufio.Reader
	res     *StartupResult
	sslDone bool
	gssDone bool
}

func (s *startup) run(ctx context.Context) error {
	// A startup packet's length never begins with a TLS handshake record's
	// type: its first byte would make it hundreds of megabytes long.
	if first, err := s.br.Peek(1); err != nil {
		return errors.Wrap(err, "read startup packet")
	} else if first[0] == tlsHandshakeRecord {
		if err := s.directTLS(ctx); err != nil {
			return err
		}
	}
	for {
		pkt, err := s.readPacket()
		if err != nil {
			return err
		}
		code := binary.BigEndian.Uint32(pkt)
		switch code {
		case sslRequestCode:
			if err := s.sslRequest(ctx, pkt); err != nil {
				return err
			}
		case gssEncRequestCode:
			if err := s.gssEncRequest(pkt); err != nil {
				return err
			}
		case cancelRequestCode:
			if len(pkt) != 12 {
				return Fatalf(CodeProtocolViolation, "invalid length of cancel request packet: %d", len(pkt)+4)
			}
			s.res.Cancel = &CancelKey{
				ProcessID: binary.BigEndian.Uint32(pkt[4:]),
				SecretKey: binary.BigEndian.Uint32(pkt[8:]),
			}
			return nil
		default:
			return s.startupMessage(pkt)
		}
	}
}

// readPacket reads one length-prefixed startup packet and returns it without
// the length word; it starts with the request code.
func (s *startup) readPacket() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(s.br, hdr[:]); err != nil {
		return nil, errors.Wrap(err, "read startup packet")
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if n < 8 || n > int64(s.cfg.MaxPacket) {
		return nil, Fatalf(CodeProtocolViolation, "invalid length of startup packet: %d", n)
	}
	pkt := make([]byte, n-4)
	if _, err := io.ReadFull(s.br, pkt); err != nil {
		return nil, errors.Wrap(err, "incomplete startup packet")
	}
	return pkt, nil
}

// tlsHandshakeRecord is the first byte of a TLS ClientHello: a client of
// sslnegotiation=direct (PostgreSQL 17) opens with one, without SSLRequest.
const tlsHandshakeRecord = 0x16

// directTLS runs the TLS handshake of a client that opened with its
// ClientHello, then the startup phase goes on inside TLS as after an
// SSLRequest answered 'S'. As in PostgreSQL, the client must have negotiated
// ALPN "postgresql": that is what tells a PostgreSQL client from any other
// TLS client sent to this port.
func (s *startup) directTLS(ctx context.Context) error {
	if s.cfg.TLS == nil {
		// PostgreSQL closes the connection; a fatal alert tells the
		// client's TLS library why instead of leaving it to guess. The
		// ClientHello's record is read first: closing with it unread would
		// reset the connection, and the alert could be lost.
		if hdr, err := s.br.Peek(5); err == nil {
			_, _ = s.br.Discard(5 + int(binary.BigEndian.Uint16(hdr[3:])))
		}
		_, _ = s.conn.Write(handshakeFailureAlert)
		return errors.New("direct TLS connection refused: TLS is not configured")
	}
	read, _ := s.br.Peek(s.br.Buffered())
	if err := s.handshake(ctx, read); err != nil {
		return err
	}
	if s.res.TLS.NegotiatedProtocol != alpnProtocol {
		return Fatalf(CodeProtocolViolation, "received direct SSL connection request without ALPN protocol negotiation extension")
	}
	return nil
}

// handshakeFailureAlert is a TLS record holding a fatal handshake_failure
// alert (RFC 8446, section 6), sent in the clear before any handshake.
var handshakeFailureAlert = []byte{21, 3, 3, 0, 2, 2, 40}

func (s *startup) sslRequest(ctx context.Context, pkt []byte) error {
	if s.sslDone || len(pkt) != 4 {
		return Fatalf(CodeProtocolViolation, "unexpected SSLRequest")
	}
	s.sslDone = true
	// Bytes after the request arrived before the handshake: unencrypted and
	// possibly injected (CVE-2021-23214). PostgreSQL refuses them too.
	if s.br.Buffered() > 0 {
		return errors.WithStack(NewError(SeverityFatal, CodeProtocolViolation, "received unencrypted data after SSL request").
			WithDetail("This could be either a client-software bug or evidence of an attempted man-in-the-middle attack."))
	}
	if s.cfg.TLS == nil {
		return s.writeByte('N')
	}
	if err := s.writeByte('S'); err != nil {
		return err
	}
	return s.handshake(ctx, nil)
}

// handshake runs the server side of a TLS handshake on the raw connection,
// whose first bytes were already read if read holds them, and makes the
// startup phase go on inside TLS: no SSLRequest or GSSENCRequest after it.
func (s *startup) handshake(ctx context.Context, read []byte) error {
	s.sslDone, s.gssDone = true, true
	var served *x509.Certificate
	tlsConn, state, err := tls13.ServerAfter(ctx, s.conn, read, recordingConfig(s.cfg.TLS, &served))
	s.res.Conn = tlsConn
	if err != nil {
		return errors.Wrap(err, "TLS handshake")
	}
	s.res.TLS = &state
	s.res.TLSRecords = "crypto_tls"
	if _, own := tlsConn.(*tls13.Conn); own {
		s.res.TLSRecords = "tls13"
	}
	s.res.ChannelBinding = EndPointBinding(served)
	s.br = bufio.NewReaderSize(tlsConn, startupBufferSize)
	return nil
}

func (s *startup) gssEncRequest(pkt []byte) error {
	if s.gssDone || len(pkt) != 4 {
		return Fatalf(CodeProtocolViolation, "unexpected GSSENCRequest")
	}
	s.gssDone = true
	if s.br.Buffered() > 0 {
		return errors.WithStack(NewError(SeverityFatal, CodeProtocolViolation, "received unencrypted data after GSSAPI encryption request").
			WithDetail("This could be either a client-software bug or evidence of an attempted man-in-the-middle attack."))
	}
	return s.writeByte('N')
}

func (s *startup) writeByte(b byte) error {
	_, err := s.res.Conn.Write([]byte{b})
	return errors.Wrap(err, "answer encryption request")
}

func (s *startup) startupMessage(pkt []byte) error {
	version := binary.BigEndian.Uint32(pkt)
	if version>>16 != protocolV3>>16 {
		return Fatalf(CodeProtocolViolation, "unsupported frontend protocol %d.%d: server supports 3.0 to 3.0",
			version>>16, version&0xffff)
	}
	params, options, err := parseStartupParams(pkt[4:])
	if err != nil {
		return err
	}
	if params["user"] == "" {
		return Fatalf(CodeInvalidAuthorization, "no PostgreSQL user name specified in startup packet")
	}
	if params["database"] == "" {
		params["database"] = params["user"]
	}
	s.res.Params = params
	if s.res.TLS == nil && s.cfg.RequireTLS &&
		(s.cfg.AllowPlaintext == nil || !s.cfg.AllowPlaintext(s.conn.RemoteAddr())) {
		return errors.WithStack(NewError(SeverityFatal, CodeInvalidAuthorization,
			"TLS required: no encryption for host %q, user %q, database %q",
			hostOf(s.conn.RemoteAddr()), params["user"], params["database"]).
			WithHint("Connect with sslmode=require."))
	}

	if s.br.Buffered() > 0 {
		s.res.Conn = &bufferedConn{Conn: s.res.Conn, r: s.br}
	}
	s.res.Backend = pgproto3.NewBackend(&messageReader{r: s.res.Conn}, s.res.Conn)
	s.res.Backend.SetMaxBodyLen(s.cfg.MaxPacket)

	// A newer 3.x minor version or protocol options: decline them as
	// PostgreSQL does, and carry on with 3.0.
	if version != protocolV3 || len(options) > 0 {
		s.res.Backend.Send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: options})
		if err := s.res.Backend.Flush(); err != nil {
			return errors.Wrap(err, "send NegotiateProtocolVersion")
		}
	}
	return nil
}

// parseStartupParams parses the name/value pairs of a StartupMessage,
// returning protocol options (_pq_.*) apart.
func parseStartupParams(b []byte) (params map[string]string, options []string, err error) {
	params = make(map[string]string)
	for {
		name, rest, ok := cstring(b)
		if !ok {
			return nil, nil, Fatalf(CodeProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
		}
		if name == "" {
			if len(rest) != 0 {
				return nil, nil, Fatalf(CodeProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
			}
			return params, options, nil
		}
		value, rest, ok := cstring(rest)
		if !ok {
			return nil, nil, Fatalf(CodeProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
		}
		if strings.HasPrefix(name, "_pq_.") {
			options = append(options, name)
		} else {
			params[name] = value
		}
		b = rest
	}
}

// cstring splits a NUL-terminated string off b.
func cstring(b []byte) (s string, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

func hostOf(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(addr.String()); err == nil {
		return host
	}
	return addr.String()
}

// recordingConfig returns a per-connection copy of cfg that records in *served
// the certificate it presents, for tls-server-end-point channel binding.
func recordingConfig(cfg *tls.Config, served **x509.Certificate) *tls.Config {
	if cfg.GetCertificate == nil && len(cfg.Certificates) == 1 && cfg.Certificates[0].Leaf != nil {
		// One certificate (the usual case): it is the one served, and the
		// config needs no copy of its own for that.
		*served = cfg.Certificates[0].Leaf
		return cfg
	}
	c := cfg.Clone()
	// crypto/tls calls GetCertificate only when Certificates is empty (or the
	// client sent SNI), so the static certificates are picked here instead.
	c.Certificates = nil
	get := cfg.GetCertificate
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		var cert *tls.Certificate
		if get != nil {
			var err error
			if cert, err = get(hello); err != nil {
				return nil, err
			}
		}
		if cert == nil {
			cert = pickCertificate(cfg.Certificates, hello)
		}
		if cert == nil {
			return nil, errors.New("no TLS certificate configured")
		}
		*served = leaf(cert)
		return cert, nil
	}
	return c
}

// pickCertificate chooses among static certificates as crypto/tls does: the
// first one the client supports, else the first.
func pickCertificate(certs []tls.Certificate, hello *tls.ClientHelloInfo) *tls.Certificate {
	if len(certs) == 0 {
		return nil
	}
	if len(certs) > 1 {
		for i := range certs {
			if hello.SupportsCertificate(&certs[i]) == nil {
				return &certs[i]
			}
		}
	}
	return &certs[0]
}

func leaf(cert *tls.Certificate) *x509.Certificate {
	if cert.Leaf != nil {
		return cert.Leaf
	}
	if len(cert.Certificate) == 0 {
		return nil
	}
	l, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil
	}
	return l
}
