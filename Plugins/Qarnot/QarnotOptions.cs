using System.Globalization;
using System.Text.RegularExpressions;
using FarmApi;

namespace FarmPlugins.Qarnot;

/// <summary>The Qarnot adapter's settings, read and validated once at initialization.</summary>
internal sealed partial class QarnotOptions
{
    public const string DefaultApiUrl = "https://api.qarnot.com";
    public const string DefaultStorageUrl = "https://storage.qarnot.com";
    public const string DockerBatchProfile = "docker-batch";

    public required string Token { get; init; }

    public required Uri ApiUrl { get; init; }

    public Uri? StorageUrl { get; init; }

    public required string Profile { get; init; }

    public string? DockerImage { get; init; }

    public required string BucketPrefix { get; init; }

    public int MaxInstances { get; init; }

    public bool ForcePathStyle { get; init; }

    public int Retries { get; init; }

    public TimeSpan RetryDelay { get; init; }

    public string? FarmTools { get; init; }

    public int Transfers { get; init; }

    /// <summary>The settings the adapter declares.</summary>
    public static IReadOnlyList<SettingDescriptor> Descriptors { get; } =
    [
        new("Token", "The Qarnot API token (also read from QARNOT_CLIENT_TOKEN). It is also the S3 secret key.", true, null),
        new("ApiUrl", "The Qarnot API (also read from QARNOT_CLUSTER_URL).", false, DefaultApiUrl),
        new("StorageUrl", "The S3 endpoint; overrides what GET /settings answers.", false, null),
        new("Profile", "The Qarnot profile tasks run with.", false, DockerBatchProfile),
        new("DockerImage", "The docker-batch image, repo[:tag], with the renderers installed; the profile's default when not set.", false, null),
        new("BucketPrefix", "Prefix of the buckets the adapter creates (lower-case letters, digits, '-').", false, "farmplugins"),
        new("MaxInstances", "At most this many instances per Qarnot task; larger levels are split into several tasks.", false, "512"),
        new("ForcePathStyle", "Path-style S3 addressing (bucket in the path, not the host name).", false, "true"),
        new("Retries", "How many times a request answered 429 or 5xx (or not answered) is tried again.", false, "5"),
        new("RetryDelayMilliseconds", "The first back-off; it doubles at each retry.", false, "1000"),
        new("FarmTools", "The farm-tools executable staged with each job (a self-contained single-file build is best); found next to the plug-in when not set.", false, null),
        new("Transfers", "S3 requests in flight at once during uploads and downloads.", false, "16"),
    ];

    public static QarnotOptions Read(FarmPluginContext context)
    {
        var errors = new List<string>();
        var token = context.GetSetting("Token") ?? Environment.GetEnvironmentVariable("QARNOT_CLIENT_TOKEN");
        if (string.IsNullOrWhiteSpace(token))
        {
            errors.Add("Token is not set (setting Token, FARM_QARNOT_TOKEN or QARNOT_CLIENT_TOKEN)");
        }
        else if (token.Any(char.IsControl) || token.Trim() != token)
        {
            errors.Add("Token holds white space or control characters");
        }

        var apiText = context.GetSetting("ApiUrl") ?? Environment.GetEnvironmentVariable("QARNOT_CLUSTER_URL") ?? DefaultApiUrl;
        var api = ReadUrl("ApiUrl", apiText, errors);
        var storageText = context.GetSetting("StorageUrl");
        var storage = storageText is null ? null : ReadUrl("StorageUrl", storageText, errors);
        var profile = context.GetSetting("Profile", DockerBatchProfile)!;
        if (!ProfileName().IsMatch(profile))
        {
            errors.Add($"Profile '{profile}' is not a profile name");
        }

        var prefix = context.GetSetting("BucketPrefix", "farmplugins")!;
        if (!BucketPrefixPattern().IsMatch(prefix))
        {
            errors.Add($"BucketPrefix '{prefix}' must be 3 to 20 lower-case letters, digits or '-', starting with a letter or digit");
        }

        var forcePathStyle = true;
        var pathStyleText = context.GetSetting("ForcePathStyle");
        if (pathStyleText is not null && !bool.TryParse(pathStyleText, out forcePathStyle))
        {
            errors.Add($"ForcePathStyle must be true or false, not '{pathStyleText}'");
        }

        var image = context.GetSetting("DockerImage");
        if (image is not null && (image.Any(char.IsWhiteSpace) || image.Length > 255))
        {
            errors.Add($"DockerImage '{image}' is not an image name");
        }

        var options = new QarnotOptions
        {
            Token = token ?? string.Empty,
            ApiUrl = api ?? new Uri(DefaultApiUrl),
            StorageUrl = storage,
            Profile = profile,
            DockerImage = image,
            BucketPrefix = prefix,
            MaxInstances = ReadInt(context, "MaxInstances", 512, 1, 100_000, errors),
            ForcePathStyle = forcePathStyle,
            Retries = ReadInt(context, "Retries", 5, 0, 20, errors),
            RetryDelay = TimeSpan.FromMilliseconds(ReadInt(context, "RetryDelayMilliseconds", 1000, 1, 600_000, errors)),
            FarmTools = context.GetSetting("FarmTools"),
            Transfers = ReadInt(context, "Transfers", 16, 1, 256, errors),
        };
        if (errors.Count > 0)
        {
            var message = $"Qarnot settings are invalid: {string.Join("; ", errors)}.";
            throw errors.Count == 1 && errors[0].StartsWith("Token is not set", StringComparison.Ordinal)
                ? new FarmAuthenticationException(message, null, context.PluginName)
                : new FarmPluginException(message, null, context.PluginName);
        }

        return options;
    }

    private static Uri? ReadUrl(string name, string text, List<string> errors)
    {
        if (Uri.TryCreate(text.TrimEnd('/'), UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
        {
            return uri;
        }

        errors.Add($"{name} '{text}' is not an http(s) URL");
        return null;
    }

    private static int ReadInt(FarmPluginContext context, string name, int fallback, int min, int max, List<string> errors)
    {
        var text = context.GetSetting(name);
        if (text is null)
        {
            return fallback;
        }

        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            errors.Add($"{name} must be a whole number from {min} to {max}, not '{text}'");
            return fallback;
        }

        return value;
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    private static partial Regex ProfileName();

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{2,19}$")]
    private static partial Regex BucketPrefixPattern();
}
