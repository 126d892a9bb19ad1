"""A stand-in for the user's browser (``$BROWSER``): opens the address and follows its
redirects, as a user who clicks "allow" would, ending at openpista's loopback callback."""

import sys

import httpx

response = httpx.get(sys.argv[1], follow_redirects=True, timeout=30)
sys.stderr.write(f"browser: {response.status_code} {response.text[:200]}\n")
