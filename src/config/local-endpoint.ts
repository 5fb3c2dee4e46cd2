/**
 * Where clients find the local endpoint: the port `snapline serve` listens
 * on by default, where the built-in `local` connection looks for a running
 * endpoint first, and the CA certificate `serve --tls` keeps in its data
 * directory, which `local` trusts. Free of dependencies: the serve command's
 * option default and the endpoint's TLS code need them without loading the
 * connection code.
 */
export const DEFAULT_LOCAL_PORT = 4577;
/** The CA certificate's file in the local endpoint's data directory. */
export const CA_CERT_FILE = 'ca.pem';
