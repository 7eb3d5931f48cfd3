namespace FarmApi;

/// <summary>A frame list that does not parse: names the offending token and where it starts.</summary>
public class FrameListFormatException : FormatException
{
    /// <summary>Makes the exception.</summary>
    /// <param name="text">The whole frame list.</param>
    /// <param name="token">The offending token.</param>
    /// <param name="position">Where the token starts, 1-based (the first character is 1).</param>
    /// <param name="reason">What is wrong with it.</param>
    public FrameListFormatException(string text, string token, int position, string reason)
        : base($"Invalid frame list '{text}': '{token}' at position {position}: {reason}.")
    {
        Text = text;
        Token = token;
        Position = position;
        Reason = reason;
    }

    /// <summary>The whole frame list.</summary>
    public string Text { get; }

    /// <summary>The offending token.</summary>
    public string Token { get; }

    /// <summary>Where the token starts, 1-based.</summary>
    public int Position { get; }

    /// <summary>What is wrong with the token.</summary>
    public string Reason { get; }
}
