using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace FarmPlugins.Qarnot;

// The adapter's reading of Qarnot's JSON (qarnot-protocol.md). Responses are parsed case-insensitively and unknown
// fields are ignored: Qarnot's answers vary in casing and grow new fields.

internal sealed class QarnotTask
{
    public string Uuid { get; set; } = string.Empty;

    public string? Name { get; set; }

    public string? Profile { get; set; }

    public string? State { get; set; }

    public DateTimeOffset? CreationDate { get; set; }

    public DateTimeOffset? EndDate { get; set; }

    public int RunningInstanceCount { get; set; }

    public long ResultsCount { get; set; }

    public string? ResultBucket { get; set; }

    public List<string>? Tags { get; set; }

    public Dictionary<string, string>? Labels { get; set; }

    public List<QarnotError>? Errors { get; set; }

    public List<QarnotCompletedInstance>? CompletedInstances { get; set; }

    public QarnotTaskStatus? Status { get; set; }

    public QarnotDependencies? Dependencies { get; set; }

    public string? Label(string key) => Labels is not null && Labels.TryGetValue(key, out var value) ? value : null;

    /// <summary>The end date, or null for Qarnot's "unset" (0001-01-01).</summary>
    public DateTimeOffset? Ended => EndDate is { } end && end.Year > 1 ? end : null;
}

internal sealed class QarnotError
{
    public string? Code { get; set; }

    public string? Message { get; set; }
}

internal sealed class QarnotCompletedInstance
{
    public int InstanceId { get; set; }

    public string? State { get; set; }

    public double WallTimeSec { get; set; }

    public double ExecTimeSec { get; set; }
}

internal sealed class QarnotTaskStatus
{
    public string? SucceededRange { get; set; }

    public string? FailedRange { get; set; }

    public string? ExecutedRange { get; set; }

    public QarnotRunningInstancesInfo? RunningInstancesInfo { get; set; }
}

internal sealed class QarnotRunningInstancesInfo
{
    public List<QarnotRunningInstance>? PerRunningInstanceInfo { get; set; }
}

internal sealed class QarnotRunningInstance
{
    public int InstanceId { get; set; }

    public string? Phase { get; set; }
}

internal sealed class QarnotDependencies
{
    public List<string>? DependsOn { get; set; }
}

internal sealed class QarnotPage
{
    public List<QarnotTask>? Data { get; set; }

    public string? NextToken { get; set; }

    public bool IsTruncated { get; set; }
}

internal sealed class QarnotUserInfo
{
    public string? Email { get; set; }

    public int MaxTask { get; set; }

    public int RunningTaskCount { get; set; }

    public int MaxInstances { get; set; }

    public int MaxBucket { get; set; }

    public long QuotaBytesBucket { get; set; }

    public long UsedQuotaBytesBucket { get; set; }
}

internal sealed class QarnotProfile
{
    public string? Name { get; set; }

    public List<QarnotConstant>? Constants { get; set; }
}

internal sealed class QarnotConstant
{
    public string? Name { get; set; }

    public string? Value { get; set; }
}

internal sealed class QarnotUuid
{
    public string? Uuid { get; set; }
}

/// <summary>Qarnot's task states (qarnot-protocol.md, "Task states").</summary>
internal static class QarnotStates
{
    public const string Submitted = "Submitted";
    public const string PendingCancel = "PendingCancel";
    public const string Cancelled = "Cancelled";
    public const string Success = "Success";
    public const string Failure = "Failure";
    public const string PendingDelete = "PendingDelete";

    public static bool IsTerminal(string? state) => Is(state, Success) || Is(state, Failure) || Is(state, Cancelled);

    public static bool Is(string? state, string expected) => string.Equals(state, expected, StringComparison.OrdinalIgnoreCase);
}

internal static class QarnotJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        PropertyNameCaseInsensitive = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
    };

    public static T? Parse<T>(string text) where T : class =>
        string.IsNullOrWhiteSpace(text) ? null : JsonSerializer.Deserialize<T>(text, Options);

    /// <summary>A tag filter for POST /tasks/paginate.</summary>
    public static JsonObject TagFilter(string tag) => new()
    {
        ["operator"] = "Equal",
        ["field"] = "Tags",
        ["value"] = tag,
    };

    /// <summary>The message of an error body: <c>{"message"}</c>, <c>{"error"}</c> or RFC 7807 problem+json.</summary>
    public static string? ErrorMessage(string body)
    {
        if (string.IsNullOrWhiteSpace(body))
        {
            return null;
        }

        try
        {
            if (JsonNode.Parse(body) is not JsonObject node)
            {
                return Shorten(body);
            }

            string? Field(string name) => node.FirstOrDefault(p => string.Equals(p.Key, name, StringComparison.OrdinalIgnoreCase)).Value is JsonValue value
                && value.TryGetValue<string>(out var text) ? text : null;

            var message = Field("message") ?? Field("error") ?? Field("detail") ?? Field("title");
            if (node.FirstOrDefault(p => string.Equals(p.Key, "errors", StringComparison.OrdinalIgnoreCase)).Value is JsonObject errors)
            {
                var details = errors.Select(e => $"{e.Key}: {string.Join(" ", e.Value is JsonArray a ? a.Select(x => x?.ToString()) : [e.Value?.ToString()])}");
                message = $"{message} ({string.Join("; ", details)})";
            }

            return message ?? Shorten(body);
        }
        catch (JsonException)
        {
            return Shorten(body);
        }
    }

    private static string Shorten(string text) => text.Length > 300 ? text[..300] + "..." : text;
}
