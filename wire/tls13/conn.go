// Package tls13 carries a server's TLS 1.3 connection on after crypto/tls
// has made the handshake: the record layer alone (RFC 8446, section 5),
// for the three suites crypto/tls offers (AES-GCM, ChaCha20-Poly1305).
//
// Why: a crypto/tls connection keeps, for its whole life, the record and
// handshake buffers it grew during the handshake, its configuration and its
// handshake state: about 8 KiB per connection, most of the memory of an idle
// client. A Conn keeps its two ciphers, its sequence numbers and a read
// buffer of 512 bytes; a larger record borrows a buffer from a pool while it
// is in flight.
//
// Server runs the handshake with crypto/tls (ServerAfter when the first
// bytes of the ClientHello were read already, to recognise a direct TLS
// connection), reading the socket one record at a time so that crypto/tls
// holds nothing past the client's Finished, and
// session tickets off so that it wrote nothing under the application keys:
// both sequence numbers then start at zero. The traffic secrets come from
// the configuration's KeyLogWriter, which Server sets on its own
// per-connection copy; they never leave the process. A session that is not
// TLS 1.3 (or has a suite not listed here) stays with crypto/tls, as does every
// session of a configuration whose GetConfigForClient returns another
// configuration (its KeyLogWriter is not this package's). No session of
// Server gets a ticket, TLS 1.2 included: PostgreSQL sends none either.
package tls13

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"hash"
	"io"
	"net"
	"sync"
	"time"

	"github.com/cockroachdb/errors"
	"golang.org/x/crypto/chacha20poly1305"
)

const (
	headerLen     = 5
	maxPlaintext  = 1 << 14
	maxCiphertext = maxPlaintext + 256 // RFC 8446, section 5.2
	tagLen        = 16

	typeAlert     = 21
	typeHandshake = 22
	typeAppData   = 23

	handshakeKeyUpdate = 24

	noAlert                = -1
	alertCloseNotify       = 0
	alertUnexpectedMessage = 10
	alertBadRecordMAC      = 20
	alertRecordOverflow    = 22
	alertIllegalParameter  = 47
	alertDecodeError       = 50
	alertUserCanceled      = 90
	alertProtocolVersion   = 70
)

// smallRead is the read buffer each connection has of its own: reads
// start in it, and a record that fits stays in it, so that a reader waiting
// for the next record (an idle session) holds nothing larger.
const smallRead = 512

// maxUselessRecords is how many records in a row may carry no application
// data (KeyUpdates, empty records, user_canceled) before the peer is taken
// to be spinning the server, as crypto/tls does.
const maxUselessRecords = 16

// closeTimeout bounds the close_notify a Close sends, as crypto/tls does.
const closeTimeout = 5 * time.Second

// bufPool holds the buffers of records in flight: one whole record at most,
// header and tag included.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, headerLen+maxCiphertext)
	return &b
}}

// fullRecord is the size of a record this package seals with the most data.
const fullRecord = headerLen + maxPlaintext + 1 + tagLen

// batchRecords is how many full records a Write seals before it writes
// them, in a buffer of batchPool.
const batchRecords = 4

var batchPool = sync.Pool{New: func() any {
	b := make([]byte, batchRecords*fullRecord)
	return &b
}}

// suite is what a TLS 1.3 cipher suite needs here.
type suite struct {
	keyLen int
	hash   func() hash.Hash
	aead   func(key []byte) (cipher.AEAD, error)
}

var suites = map[uint16]suite{
	tls.TLS_AES_128_GCM_SHA256:       {keyLen: 16, hash: sha256.New, aead: newAESGCM},
	tls.TLS_AES_256_GCM_SHA384:       {keyLen: 32, hash: sha512.New384, aead: newAESGCM},
	tls.TLS_CHACHA20_POLY1305_SHA256: {keyLen: chacha20poly1305.KeySize, hash: sha256.New, aead: chacha20poly1305.New},
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// half is one direction's protection: its cipher, IV, secret and sequence
// number.
type half struct {
	suite  suite
	secret []byte
	aead   cipher.AEAD
	iv     [12]byte
	seq    uint64
	nbuf   [12]byte // the nonce being used: a local array would escape
}

// set installs the keys of a traffic secret, with the sequence number at 0.
func (h *half) set(s suite, secret []byte) error {
	key, err := expandLabel(s, secret, "key", s.keyLen)
	if err != nil {
		return err
	}
	iv, err := expandLabel(s, secret, "iv", len(h.iv))
	if err != nil {
		return err
	}
	aead, err := s.aead(key)
	if err != nil {
		return errors.Wrap(err, "tls13: cipher")
	}
	h.suite, h.secret, h.aead, h.seq = s, secret, aead, 0
	copy(h.iv[:], iv)
	return nil
}

// update moves to the next traffic secret (RFC 8446, section 7.2).
func (h *half) update() error {
	next, err := expandLabel(h.suite, h.secret, "traffic upd", h.suite.hash().Size())
	if err != nil {
		return err
	}
	return h.set(h.suite, next)
}

// nonce is the per-record nonce: the IV with the sequence number XORed into
// its last 8 bytes.
func (h *half) nonce() []byte {
	h.nbuf = h.iv
	for i := 0; i < 8; i++ {
		h.nbuf[4+i] ^= byte(h.seq >> (56 - 8*i))
	}
	return h.nbuf[:]
}

// expandLabel is HKDF-Expand-Label with an empty context (RFC 8446, section 7.1).
func expandLabel(s suite, secret []byte, label string, n int) ([]byte, error) {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = append(info, byte(n>>8), byte(n), byte(len(full)))
	info = append(info, full...)
	info = append(info, 0)
	out, err := hkdf.Expand(s.hash, secret, string(info), n)
	return out, errors.Wrap(err, "tls13: expand label")
}

// Conn is a server's TLS 1.3 connection after its handshake. It is safe
// for one reader and one writer at a time, like a net.Conn.
type Conn struct {
	conn net.Conn

	rmu   sync.Mutex
	in    half
	rb    []byte // the read buffer: small, or *pooled for a larger record
	small [smallRead]byte
	// pooled comes from bufPool for a record larger than small, and goes
	// back once read.
	pooled *[]byte
	rlo    int // rb[rlo:rhi] is read and not yet opened
	rhi    int
	plain  []byte // application data opened and not yet returned, inside rb
	rerr   error  // once set, every Read returns it
	// useless counts the records in a row without application data.
	useless int

	wmu  sync.Mutex
	out  half
	werr error // once set, every Write returns it
	// answered: a KeyUpdate went out in answer to a request, and no
	// application data since; more requests meanwhile need no answer of
	// their own (RFC 8446, section 4.6.3).
	answered bool
}

// newConn carries conn on with the application traffic secrets of a
// handshake that ended with nothing read or written under them.
func newConn(conn net.Conn, version, cipherSuite uint16, clientSecret, serverSecret []byte) (*Conn, error) {
	s, ok := suites[cipherSuite]
	if !ok || version != tls.VersionTLS13 {
		return nil, errors.Newf("tls13: not a TLS 1.3 session of a known suite (version %#x, suite %#x)", version, cipherSuite)
	}
	c := &Conn{conn: conn}
	if err := c.in.set(s, clientSecret); err != nil {
		return nil, err
	}
	if err := c.out.set(s, serverSecret); err != nil {
		return nil, err
	}
	return c, nil
}

// NetConn returns the connection the records travel on.
func (c *Conn) NetConn() net.Conn { return c.conn }

// Read reads application data. An error of the connection underneath that
// is temporary (a deadline, a non-blocking socket with nothing to read) is
// returned as is, and the next Read goes on where this one stopped.
func (c *Conn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if len(c.plain) > 0 {
			n := copy(b, c.plain)
			c.plain = c.plain[n:]
			c.release()
			return n, nil
		}
		if c.rerr != nil {
			// Nothing more will be read: what is buffered can go.
			c.rlo, c.rhi = 0, 0
			c.release()
			return 0, c.rerr
		}
		if len(b) == 0 {
			return 0, nil
		}
		if err := c.readRecord(); err != nil {
			if c.rerr != nil {
				continue // reading has ended: returned above, buffers released
			}
			c.release()
			return 0, err
		}
	}
}

// Buffered says whether the next Read has something without reading the
// connection underneath: data not yet returned, or a whole record.
func (c *Conn) Buffered() bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.plain) > 0 {
		return true
	}
	have := c.rhi - c.rlo
	return have >= headerLen && have >= headerLen+int(binary.BigEndian.Uint16(c.rb[c.rlo+3:]))
}

// release gives the pooled read buffer back once it holds nothing.
func (c *Conn) release() {
	if c.pooled != nil && len(c.plain) == 0 && c.rlo == c.rhi {
		bufPool.Put(c.pooled)
		c.pooled, c.rb, c.rlo, c.rhi = nil, nil, 0, 0
	}
}

// fill reads until the buffer holds n bytes from rlo.
func (c *Conn) fill(n int) error {
	if c.rb == nil {
		c.rb = c.small[:]
	}
	if c.rlo == c.rhi {
		c.rlo, c.rhi = 0, 0 // read into the whole buffer, not its end
	}
	if c.rlo+n > len(c.rb) {
		if n > len(c.rb) {
			c.pooled = bufPool.Get().(*[]byte)
			c.rhi = copy(*c.pooled, c.rb[c.rlo:c.rhi])
			c.rb = *c.pooled
		} else {
			c.rhi = copy(c.rb, c.rb[c.rlo:c.rhi])
		}
		c.rlo = 0
	}
	for zero := 0; c.rhi-c.rlo < n; {
		m, err := c.conn.Read(c.rb[c.rhi:])
		c.rhi += m
		if m == 0 && err == nil {
			if zero++; zero == 100 {
				err = io.ErrNoProgress
			}
		}
		if err == nil {
			continue
		}
		if c.rhi-c.rlo >= n {
			break // the error comes back with the next read
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return err
		}
		if err == io.EOF {
			if c.rhi > c.rlo {
				err = io.ErrUnexpectedEOF
			}
			c.rerr = err
			return err
		}
		c.rerr = errors.Wrap(err, "tls13: read")
		return c.rerr
	}
	return nil
}

// readRecord reads and opens one record: application data goes to plain,
// an alert or a KeyUpdate is acted on.
func (c *Conn) readRecord() error {
	if err := c.fill(headerLen); err != nil {
		return err
	}
	hdr := c.rb[c.rlo : c.rlo+headerLen]
	if hdr[0] != typeAppData {
		return c.fatal(alertUnexpectedMessage, errors.Newf("tls13: unexpected record type %d after the handshake", hdr[0]))
	}
	if hdr[1] != 3 || hdr[2] != 3 {
		return c.fatal(alertProtocolVersion, errors.Newf("tls13: record version %#x", binary.BigEndian.Uint16(hdr[1:])))
	}
	n := int(binary.BigEndian.Uint16(hdr[3:]))
	if n > maxCiphertext {
		return c.fatal(alertRecordOverflow, errors.Newf("tls13: record of %d bytes, over the %d allowed", n, maxCiphertext))
	}
	if err := c.fill(headerLen + n); err != nil {
		return err
	}
	rec := c.rb[c.rlo : c.rlo+headerLen+n] // fill may have moved it
	c.rlo += headerLen + n
	plain, err := c.in.aead.Open(rec[headerLen:headerLen], c.in.nonce(), rec[headerLen:], rec[:headerLen])
	if err != nil {
		return c.fatal(alertBadRecordMAC, errors.New("tls13: record failed authentication"))
	}
	c.in.seq++
	if len(plain) > maxPlaintext+1 {
		return c.fatal(alertRecordOverflow, errors.Newf("tls13: record of %d bytes of data, over the %d allowed", len(plain), maxPlaintext+1))
	}
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return c.fatal(alertUnexpectedMessage, errors.New("tls13: record without a content type"))
	}
	typ := plain[i]
	plain = plain[:i]
	if typ == typeAppData && len(plain) > 0 {
		c.useless = 0
		c.plain = plain
		return nil
	}
	if c.useless++; c.useless > maxUselessRecords {
		return c.fatal(alertUnexpectedMessage, errors.Newf("tls13: %d records in a row without data", c.useless))
	}
	switch typ {
	case typeAppData:
		return nil // empty
	case typeAlert:
		if len(plain) != 2 {
			return c.fatal(alertDecodeError, errors.New("tls13: malformed alert"))
		}
		switch plain[1] {
		case alertCloseNotify:
			c.rerr = io.EOF
		case alertUserCanceled:
			// Sent with close_notify by some clients, and ignored as
			// crypto/tls does.
		default:
			c.rerr = errors.Newf("tls13: remote error: alert %d", plain[1])
		}
		return nil
	case typeHandshake:
		if len(plain) == 0 {
			return c.fatal(alertUnexpectedMessage, errors.New("tls13: empty handshake record"))
		}
		return c.handshakeMessages(plain)
	}
	return c.fatal(alertUnexpectedMessage, errors.Newf("tls13: unexpected content type %d", typ))
}

// handshakeMessages acts on what a client may send after its Finished: a
// KeyUpdate, whole within its record and ending it (RFC 8446, section 5.1).
func (c *Conn) handshakeMessages(b []byte) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return c.fatal(alertUnexpectedMessage, errors.New("tls13: handshake message split across records"))
		}
		typ, n := b[0], int(b[1])<<16|int(b[2])<<8|int(b[3])
		if len(b) < 4+n {
			return c.fatal(alertUnexpectedMessage, errors.New("tls13: handshake message split across records"))
		}
		body := b[4 : 4+n]
		b = b[4+n:]
		if typ != handshakeKeyUpdate {
			return c.fatal(alertUnexpectedMessage, errors.Newf("tls13: unexpected handshake message %d after the handshake", typ))
		}
		if n != 1 {
			return c.fatal(alertDecodeError, errors.New("tls13: malformed KeyUpdate"))
		}
		if body[0] > 1 {
			return c.fatal(alertIllegalParameter, errors.Newf("tls13: KeyUpdate request_update %d", body[0]))
		}
		if len(b) > 0 {
			return c.fatal(alertUnexpectedMessage, errors.New("tls13: data after a KeyUpdate in its record"))
		}
		if err := c.in.update(); err != nil {
			return c.fatal(noAlert, err)
		}
		if body[0] == 1 {
			c.answerKeyUpdate()
		}
	}
	return nil
}

// answerKeyUpdate sends a KeyUpdate, then moves the writing keys, unless
// one already went out since the last application data. A failure ends
// writing, not reading: the next Write reports it.
func (c *Conn) answerKeyUpdate() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil || c.answered {
		return
	}
	if err := c.writeRecordLocked(typeHandshake, []byte{handshakeKeyUpdate, 0, 0, 1, 0}); err != nil {
		return
	}
	if err := c.out.update(); err != nil {
		c.werr = err
		return
	}
	c.answered = true
}

// fatal ends reading with err, telling the peer with an alert (unless
// alert is noAlert).
func (c *Conn) fatal(alert int, err error) error {
	c.rerr = err
	if alert != noAlert {
		c.wmu.Lock()
		if c.werr == nil {
			_ = c.writeRecordLocked(typeAlert, []byte{2, byte(alert)})
			c.werr = err
		}
		c.wmu.Unlock()
	}
	return err
}

// Write sends b as application data records, up to batchRecords of them
// per write to the connection underneath.
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	pool := &bufPool
	if len(b) > maxPlaintext {
		pool = &batchPool
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	n := 0
	for len(b) > n {
		out := (*bp)[:0]
		sent := n
		for len(b) > n && cap(out)-len(out) >= fullRecord {
			chunk := b[n:min(len(b), n+maxPlaintext)]
			out = c.sealLocked(out, typeAppData, chunk)
			n += len(chunk)
		}
		if err := c.flushLocked(out); err != nil {
			return sent, err
		}
		c.answered = false
	}
	return n, nil
}

// writeRecordLocked seals data as one record of type typ and writes it.
func (c *Conn) writeRecordLocked(typ byte, data []byte) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return c.flushLocked(c.sealLocked((*bp)[:0], typ, data))
}

// sealLocked appends to dst the record of data, of content type typ
// (at most maxPlaintext bytes; dst has room for fullRecord more).
func (c *Conn) sealLocked(dst []byte, typ byte, data []byte) []byte {
	start := len(dst)
	dst = append(dst, typeAppData, 3, 3, 0, 0)
	binary.BigEndian.PutUint16(dst[start+3:], uint16(len(data)+1+tagLen))
	dst = append(dst, data...)
	dst = append(dst, typ)
	hdr := dst[start : start+headerLen]
	inner := dst[start+headerLen:]
	sealed := c.out.aead.Seal(inner[:0], c.out.nonce(), inner, hdr)
	c.out.seq++
	return dst[:start+headerLen+len(sealed)]
}

// flushLocked writes sealed records. A failed write leaves the stream cut
// inside a record: writing ends.
func (c *Conn) flushLocked(b []byte) error {
	if _, err := c.conn.Write(b); err != nil {
		c.werr = errors.Wrap(err, "tls13: write")
		return c.werr
	}
	return nil
}

// Close sends close_notify (within closeTimeout) and closes the
// connection. With a Write in flight, it only closes the connection, which
// ends that Write: a Close is how a stuck writer is stopped.
func (c *Conn) Close() error {
	if c.wmu.TryLock() {
		if c.werr == nil {
			_ = c.conn.SetWriteDeadline(time.Now().Add(closeTimeout))
			_ = c.writeRecordLocked(typeAlert, []byte{1, alertCloseNotify})
			c.werr = net.ErrClosed
		}
		c.wmu.Unlock()
	}
	return c.conn.Close()
}

func (c *Conn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
