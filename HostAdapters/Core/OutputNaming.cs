using System.Globalization;
using System.Text.RegularExpressions;
using FarmApi;

namespace FarmPlugins.Hosts;

/// <summary>Turns an output pattern (<c>&lt;scene&gt;_####.png</c>) into each frame's relative output path.</summary>
public static partial class OutputNaming
{
    /// <summary>Why <paramref name="pattern"/> is not a usable output pattern, or null when it is.</summary>
    /// <param name="pattern">The pattern.</param>
    /// <returns>The reason.</returns>
    public static string? Check(string pattern)
    {
        if (string.IsNullOrWhiteSpace(pattern))
        {
            return "the pattern is empty";
        }

        if (HashRun().Matches(pattern).Count != 1)
        {
            return $"'{pattern}' needs exactly one run of '#' for the frame number, for example <scene>_####.png";
        }

        if (!pattern.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
        {
            return $"'{pattern}' must end in .png (frames are PNG images)";
        }

        var sample = pattern.Replace("<scene>", "scene", StringComparison.Ordinal);
        return JobPaths.Check(sample) is { } reason ? $"{reason}" : null;
    }

    /// <summary>The relative output path of <paramref name="frame"/>.</summary>
    /// <param name="pattern">The pattern; null for <see cref="RenderSettings.DefaultOutputPattern"/>.</param>
    /// <param name="sceneName">The scene's name without its extension.</param>
    /// <param name="frame">The frame.</param>
    /// <returns>For example <c>demo_0012.png</c>.</returns>
    public static string Format(string? pattern, string sceneName, int frame)
    {
        pattern ??= RenderSettings.DefaultOutputPattern;
        var reason = Check(pattern);
        if (reason is not null)
        {
            throw new ArgumentException($"output: {reason}.", nameof(pattern));
        }

        var named = pattern.Replace("<scene>", sceneName, StringComparison.Ordinal);
        return HashRun().Replace(named, m => FormatFrame(frame, m.Length), 1);
    }

    /// <summary>A frame number zero-padded to <paramref name="digits"/> (the sign does not count).</summary>
    /// <param name="frame">The frame.</param>
    /// <param name="digits">The width.</param>
    /// <returns>For example <c>0012</c> or <c>-0003</c>.</returns>
    public static string FormatFrame(int frame, int digits = 4) =>
        (frame < 0 ? "-" : string.Empty) + Math.Abs((long)frame).ToString(CultureInfo.InvariantCulture).PadLeft(digits, '0');

    [GeneratedRegex("#+")]
    private static partial Regex HashRun();
}
