import { AwsError } from './aws-error.js';
import { sendXml, type Exchange } from './http.js';
import { ACCOUNT_ID } from './snapshots.js';
import { element, textElement, xmlDocument } from './xml.js';

const STS_NAMESPACE = 'https://sts.amazonaws.com/doc/2011-06-15/';

/** The STS API version, which tells an unsigned STS query request from an EC2 one. */
export const STS_VERSION = '2011-06-15';

/**
 * STS GetCallerIdentity over the query protocol (XML answer nested in
 * `<GetCallerIdentityResult>`). Every caller is the endpoint's one account.
 * Never throws.
 */
export function handleSts(action: string, exchange: Exchange): void {
  if (action !== 'GetCallerIdentity') {
    sendStsError(exchange, new AwsError(400, 'InvalidAction', `Could not find operation ${action} for version ${STS_VERSION}`));
    return;
  }
  const result = element(
    'GetCallerIdentityResult',
    textElement('Arn', `arn:aws:iam::${ACCOUNT_ID}:user/snapline`) + textElement('UserId', 'AIDASNAPLINELOCALUSER') + textElement('Account', ACCOUNT_ID),
  );
  const metadata = element('ResponseMetadata', textElement('RequestId', exchange.requestId));
  sendXml(exchange, 200, xmlDocument('GetCallerIdentityResponse', STS_NAMESPACE, result + metadata));
}

export function sendStsError(exchange: Exchange, error: AwsError): void {
  const type = error.status >= 500 ? 'Receiver' : 'Sender';
  const inner = element('Error', textElement('Type', type) + textElement('Code', error.code) + textElement('Message', error.message));
  sendXml(exchange, error.status, xmlDocument('ErrorResponse', STS_NAMESPACE, inner + textElement('RequestId', exchange.requestId)));
}
