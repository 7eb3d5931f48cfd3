using Microsoft.Extensions.Logging;

namespace FarmApi;

/// <summary>What a host gives a plug-in when it initializes it.</summary>
public sealed class FarmPluginContext
{
    /// <summary>The plug-in's registered name.</summary>
    public required string PluginName { get; init; }

    /// <summary>Where the plug-in logs.</summary>
    public required ILoggerFactory LoggerFactory { get; init; }

    /// <summary>The merged settings; keys are matched case-insensitively.</summary>
    public required IReadOnlyDictionary<string, string> Settings { get; init; }

    /// <summary>A private, writable folder for this plug-in.</summary>
    public required string DataDirectory { get; init; }

    /// <summary>The clock; tests pass a fake one.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Reads a setting, or <paramref name="defaultValue"/> when it is not set or empty.</summary>
    /// <param name="name">The key, matched case-insensitively.</param>
    /// <param name="defaultValue">The value when it is not set.</param>
    /// <returns>The value.</returns>
    public string? GetSetting(string name, string? defaultValue = null)
    {
        if (Settings.TryGetValue(name, out var value) && !string.IsNullOrEmpty(value))
        {
            return value;
        }

        foreach (var pair in Settings)
        {
            if (string.Equals(pair.Key, name, StringComparison.OrdinalIgnoreCase) && !string.IsNullOrEmpty(pair.Value))
            {
                return pair.Value;
            }
        }

        return defaultValue;
    }

    /// <summary>Reads a number setting.</summary>
    /// <param name="name">The key.</param>
    /// <param name="defaultValue">The value when it is not set.</param>
    /// <returns>The value.</returns>
    /// <exception cref="FarmPluginException">The value is not a number; the message names the setting.</exception>
    public double GetDoubleSetting(string name, double defaultValue)
    {
        var text = GetSetting(name);
        if (text is null)
        {
            return defaultValue;
        }

        if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var value)
            || double.IsNaN(value) || double.IsInfinity(value))
        {
            throw new FarmPluginException($"Setting '{name}' of {PluginName} must be a number, not '{text}'.", null, PluginName);
        }

        return value;
    }

    /// <summary>Reads a whole-number setting.</summary>
    /// <param name="name">The key.</param>
    /// <param name="defaultValue">The value when it is not set.</param>
    /// <returns>The value.</returns>
    /// <exception cref="FarmPluginException">The value is not a whole number; the message names the setting.</exception>
    public int GetInt32Setting(string name, int defaultValue)
    {
        var text = GetSetting(name);
        if (text is null)
        {
            return defaultValue;
        }

        if (!int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var value))
        {
            throw new FarmPluginException($"Setting '{name}' of {PluginName} must be a whole number, not '{text}'.", null, PluginName);
        }

        return value;
    }
}
