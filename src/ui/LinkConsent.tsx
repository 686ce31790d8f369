import type { Role } from '../state/models.ts';

/**
 * Asks before a link's model is read from other servers: the link alone has sent no request yet.
 * Hosts are rendered as text.
 */
export function LinkConsent({ role, hosts, accept }: { role: Role; hosts: readonly string[]; accept(): void }) {
  return (
    <div className="status warn" data-testid={`link-model-consent-${role}`}>
      <p>
        This link asks to read the model from {hosts.length === 1 ? 'another server' : `${hosts.length} other servers`}. Nothing has been requested yet; load it
        only if you trust {hosts.length === 1 ? 'this server' : 'these servers'}:
      </p>
      <ul className="mono link-hosts" data-testid={`link-model-hosts-${role}`}>
        {hosts.map((h) => (
          <li key={h}>{h}</li>
        ))}
      </ul>
      <button type="button" onClick={accept} data-testid={`link-model-accept-${role}`}>
        Load from {hosts.length === 1 ? 'this server' : 'these servers'}
      </button>
    </div>
  );
}
