namespace FarmApi;

/// <summary>Replaces secret values in text with <c>***</c> before it reaches a log or an exception message.</summary>
public sealed class SecretRedactor
{
    /// <summary>What a secret is replaced with.</summary>
    public const string Mask = "***";

    private readonly string[] _secrets;

    /// <summary>Makes a redactor for the given secret values; empty ones are ignored.</summary>
    /// <param name="secrets">The values to hide.</param>
    public SecretRedactor(IEnumerable<string?> secrets)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        // Longest first, so a secret that contains another is hidden whole.
        _secrets = secrets.Where(s => !string.IsNullOrEmpty(s)).Select(s => s!).Distinct(StringComparer.Ordinal)
            .OrderByDescending(s => s.Length).ToArray();
    }

    /// <summary>A redactor that hides nothing.</summary>
    public static SecretRedactor None { get; } = new([]);

    /// <summary>Whether there is any secret to hide.</summary>
    public bool IsEmpty => _secrets.Length == 0;

    /// <summary>Makes a redactor for the settings marked secret by <paramref name="descriptors"/>.</summary>
    /// <param name="descriptors">The plug-in's setting descriptors.</param>
    /// <param name="settings">The effective settings.</param>
    /// <returns>The redactor.</returns>
    public static SecretRedactor ForSettings(IEnumerable<SettingDescriptor> descriptors, IReadOnlyDictionary<string, string> settings)
    {
        ArgumentNullException.ThrowIfNull(descriptors);
        ArgumentNullException.ThrowIfNull(settings);
        var secretNames = new HashSet<string>(descriptors.Where(d => d.IsSecret).Select(d => d.Name), StringComparer.OrdinalIgnoreCase);
        return new SecretRedactor(settings.Where(p => secretNames.Contains(p.Key)).Select(p => p.Value));
    }

    /// <summary>Whether <paramref name="text"/> holds a secret.</summary>
    /// <param name="text">The text.</param>
    /// <returns><see langword="true"/> when a secret is in it.</returns>
    public bool Contains(string? text) =>
        text is not null && _secrets.Any(s => text.Contains(s, StringComparison.Ordinal));

    /// <summary>The text with every secret replaced by <see cref="Mask"/>.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The redacted text.</returns>
    public string Redact(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return text ?? string.Empty;
        }

        foreach (var secret in _secrets)
        {
            text = text.Replace(secret, Mask, StringComparison.Ordinal);
        }

        return text;
    }

    /// <summary>
    /// The exception itself when no message of its chain holds a secret; otherwise a <see cref="FarmPluginException"/>
    /// that keeps the type names and redacted messages and stack traces of the chain.
    /// </summary>
    /// <param name="exception">The exception.</param>
    /// <returns>An exception safe to keep as an inner exception.</returns>
    public Exception Sanitize(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (IsEmpty || !ChainHoldsSecret(exception))
        {
            return exception;
        }

        return new RedactedException(exception.GetType().FullName ?? "Exception", Redact(exception.Message),
            Redact(exception.StackTrace), exception.InnerException is null ? null : Sanitize(exception.InnerException));
    }

    private bool ChainHoldsSecret(Exception exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            if (Contains(current.Message) || Contains(current.StackTrace))
            {
                return true;
            }
        }

        return false;
    }

    private sealed class RedactedException(string originalType, string message, string? stackTrace, Exception? inner)
        : FarmPluginException($"{originalType}: {message}", inner)
    {
        public override string? StackTrace => stackTrace;
    }
}
