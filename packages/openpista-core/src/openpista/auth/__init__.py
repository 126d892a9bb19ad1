"""Provider credentials: the 0600 credentials file, OAuth 2.0 PKCE login and token refresh.

See ``docs/auth.md``. Nothing in this package logs or prints a secret: the repr of a
:class:`~openpista.auth.credentials.Credential` masks its tokens and error messages name the
provider and the fix, never a token.
"""

from openpista.auth.credentials import AuthError, Credential, CredentialStore

__all__ = ["AuthError", "Credential", "CredentialStore"]
