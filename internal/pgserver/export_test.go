package pgserver

// DropLock releases s's lock on its dir as the death of the process that
// started s would, leaving its postmaster running: what a later Start finds
// when tdb was killed and its postmaster has not stopped yet.
func DropLock(s *Server) { _ = s.lock.Close() }
