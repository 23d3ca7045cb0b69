// Package tickets makes TLS session tickets cluster-wide: any node can
// resume a session another node issued, and the front server can read,
// from the ClientHello alone, which node issued it, so a resumed session
// returns to its node (route.Request.SessionNode).
//
// A ticket, as the client stores and presents it (the TLS 1.3
// pre_shared_key identity, or the TLS 1.2 session_ticket extension):
//
//	offset  size  field
//	0       3     magic "SHT"
//	3       1     version 1
//	4       1     node ID length n (1..32)
//	5       n     node ID of the issuing node (letters, digits, '-', '_')
//	5+n     4     rotation period number, big endian
//	9+n     12    nonce (random per ticket)
//	21+n    ...   AES-256-GCM ciphertext of crypto/tls's SessionState.Bytes
//	end-16  16    GCM tag
//
// Everything before the ciphertext (magic through nonce) is the AEAD's
// additional data: the node ID travels in clear so that NodeOf can read it
// without a key, and it is authenticated, so a ticket whose tag was edited
// to name another node does not decrypt (the connection then gets a full
// handshake, never an error).
//
// Keys: the key of period p (p = Unix seconds / rotation) is
// HKDF-SHA256(secret = the cluster key, salt = none, info = "shoal tls
// ticket v1" || p as 8 bytes big endian), 32 bytes. Every node derives the
// same keys from the cluster key and its clock, so no key is ever sent.
// New tickets use the current period's key; periods p-1 (tickets issued
// up to one period ago), p and p+1 (an issuer whose clock runs ahead) are
// accepted; anything else, a ticket of another cluster, a tampered ticket
// or one not issued by shoal gives a full handshake and is counted. A
// ticket thus stays valid between one and two periods. The keys follow
// the clock: each wrap and unwrap looks at the period and derives the new
// keys when it has changed (no goroutine, no timer).
//
// Why our own AEAD rather than tls.Config.SetSessionTicketKeys with
// EncryptTicket/DecryptTicket: the Go ticket format authenticates only its
// own bytes, so a clear node tag in front of it would not be covered by
// its MAC; a period number in clear also picks the key directly instead
// of trying each key in turn.
package tickets
