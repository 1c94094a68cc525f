package wire

import (
	"slices"

	"github.com/cockroachdb/errors"
	"github.com/jackc/pgx/v5/pgproto3"

	"tdb/wire/scram"
)

// AuthenticateSCRAM runs a SCRAM-SHA-256 exchange with the client on be and
// checks its proof against every candidate verifier (all made with salt and
// iterations). binding is StartupResult.ChannelBinding: when non-nil,
// SCRAM-SHA-256-PLUS is offered too, and a client that could bind but says
// the server cannot ("y") is refused as a downgrade.
//
// On success it sends AuthenticationSASLFinal and AuthenticationOk (flushed)
// and returns the index of the matching candidate. When no candidate matches
// it returns -1 and FATAL 28P01 `password authentication failed for user "<user>"`,
// which the caller sends; only this code counts as a failed attempt. For an
// unknown user pass scram.FakeSalt and no candidates: the client sees the same
// exchange and the same error. A malformed exchange is FATAL 08P01; an error
// with no *PGError is I/O (the client went away, e.g. psql asking for a
// password): close without counting a failure.
//
// Reads are bounded by the connection's deadline, which the caller sets.
func AuthenticateSCRAM(be *pgproto3.Backend, user string, salt []byte, iterations int,
	candidates []scram.Verifier, binding []byte) (matched int, err error) {
	return AuthenticateSCRAMRefresh(be, user, salt, iterations, candidates, binding, nil)
}

// AuthenticateSCRAMRefresh is AuthenticateSCRAM with a second look: when the
// proof matches no candidate and refresh is not nil, refresh is called once
// for fresh candidates (same salt and iterations; the caller may wait for its
// replica to catch up) and the same proof is checked against them before the
// login fails. The returned index is into the fresh list when it matched there.
func AuthenticateSCRAMRefresh(be *pgproto3.Backend, user string, salt []byte, iterations int,
	candidates []scram.Verifier, binding []byte, refresh func() []scram.Verifier) (matched int, err error) {
	return AuthenticateSCRAMChecked(be, user, salt, iterations, candidates, binding, refresh, nil)
}

// AuthenticateSCRAMChecked is AuthenticateSCRAMRefresh with a check run when
// the client's proof has arrived, before it is verified: a non-nil error
// ends the exchange with that error instead (an IP banned while it was
// logging in gets no verdict on its guess).
func AuthenticateSCRAMChecked(be *pgproto3.Backend, user string, salt []byte, iterations int,
	candidates []scram.Verifier, binding []byte, refresh func() []scram.Verifier, check func() error) (matched int, err error) {
	srv := scram.NewServer(salt, iterations, candidates, binding)
	mechanisms := srv.Mechanisms()

	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: mechanisms})
	if err := be.Flush(); err != nil {
		return -1, errors.Wrap(err, "send AuthenticationSASL")
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return -1, errors.WithStack(err)
	}
	msg, err := be.Receive()
	if err != nil {
		return -1, receiveError(err, "SASLInitialResponse")
	}
	initial, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return -1, unexpectedMessage(msg, "SASLInitialResponse")
	}
	if !slices.Contains(mechanisms, initial.AuthMechanism) {
		return -1, Fatalf(CodeProtocolViolation, "client selected an invalid SASL authentication mechanism")
	}
	serverFirst, err := srv.ClientFirst(initial.AuthMechanism, initial.Data)
	if err != nil {
		return -1, scramError(err)
	}

	be.Send(&pgproto3.AuthenticationSASLContinue{Data: serverFirst})
	if err := be.Flush(); err != nil {
		return -1, errors.Wrap(err, "send AuthenticationSASLContinue")
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return -1, errors.WithStack(err)
	}
	msg, err = be.Receive()
	if err != nil {
		return -1, receiveError(err, "SASLResponse")
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return -1, unexpectedMessage(msg, "SASLResponse")
	}
	if check != nil {
		if err := check(); err != nil {
			return -1, err
		}
	}
	matched, serverFinal, err := srv.ClientFinal(resp.Data)
	if err != nil {
		return -1, scramError(err)
	}
	if matched < 0 && refresh != nil {
		matched, serverFinal = srv.Recheck(refresh())
	}
	if matched < 0 {
		return -1, Fatalf(CodeInvalidPassword, "password authentication failed for user \"%s\"", user)
	}

	be.Send(&pgproto3.AuthenticationSASLFinal{Data: serverFinal})
	be.Send(&pgproto3.AuthenticationOk{})
	if err := be.Flush(); err != nil {
		return -1, errors.Wrap(err, "send AuthenticationOk")
	}
	return matched, nil
}

// receiveError keeps I/O errors free of a *PGError (nothing to tell a gone
// client) and turns a message pgproto3 cannot decode into a 08P01.
func receiveError(err error, want string) error {
	var tooLong *pgproto3.ExceededMaxBodyLenErr
	if errors.As(err, &tooLong) {
		return Fatalf(CodeProtocolViolation, "%s too large", want)
	}
	if isIOError(err) {
		return errors.Wrapf(err, "receive %s", want)
	}
	return errors.WithStack(NewError(SeverityFatal, CodeProtocolViolation, "invalid %s", want).WithDetail(err.Error()))
}

func unexpectedMessage(msg pgproto3.FrontendMessage, want string) error {
	if _, ok := msg.(*pgproto3.Terminate); ok {
		return errors.Newf("client terminated the connection instead of sending %s", want)
	}
	return Fatalf(CodeProtocolViolation, "expected %s", want)
}

func scramError(err error) error {
	return errors.WithStack(NewError(SeverityFatal, CodeProtocolViolation, "%s", err.Error()))
}
