using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using FarmApi;
using Microsoft.Extensions.Logging;

namespace FarmPlugins.Qarnot;

/// <summary>An answer of the API that was not an error (2xx, or a 404 the caller asked to see).</summary>
internal sealed record ApiResponse(HttpStatusCode Status, string Body)
{
    public bool NotFound => Status == HttpStatusCode.NotFound;
}

/// <summary>
/// Qarnot's REST API over HTTP: the raw token in <c>Authorization</c>, JSON bodies, 429/5xx retried with exponential
/// back-off, errors turned into the FarmApi exceptions. The token is never written into a message.
/// </summary>
internal sealed class QarnotApi : IDisposable
{
    private readonly HttpClient _http;
    private readonly QarnotOptions _options;
    private readonly ILogger _logger;
    private readonly SecretRedactor _redactor;
    private readonly string _pluginName;

    public QarnotApi(QarnotOptions options, ILogger logger, string pluginName, HttpMessageHandler? handler = null)
    {
        _options = options;
        _logger = logger;
        _pluginName = pluginName;
        _redactor = new SecretRedactor([options.Token]);
        _http = new HttpClient(handler ?? new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }, disposeHandler: true)
        {
            BaseAddress = new Uri(options.ApiUrl.AbsoluteUri.TrimEnd('/') + "/"),
            Timeout = TimeSpan.FromSeconds(100),
        };
        _http.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", options.Token);
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("FarmPlugins.Qarnot", "2.0"));
        _http.DefaultRequestHeaders.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
    }

    public SecretRedactor Redactor => _redactor;

    public async Task<T> GetAsync<T>(string path, CancellationToken cancellationToken) where T : class
    {
        var response = await SendAsync(HttpMethod.Get, path, null, cancellationToken).ConfigureAwait(false);
        return QarnotJson.Parse<T>(response.Body) ?? throw Failure($"GET {path} answered an empty body");
    }

    public async Task<string> GetTextAsync(string path, CancellationToken cancellationToken) =>
        (await SendAsync(HttpMethod.Get, path, null, cancellationToken).ConfigureAwait(false)).Body;

    /// <summary>Sends one request; retries 429/5xx and unanswered requests.</summary>
    /// <param name="method">The method.</param>
    /// <param name="path">The path, appended to the API URL.</param>
    /// <param name="body">The JSON body, or null.</param>
    /// <param name="cancellationToken">Cancels.</param>
    /// <param name="allowNotFound">Return a 404 to the caller instead of throwing.</param>
    /// <param name="beforeRetry">Asked before each retry; an answer it gives ends the retries (a lost answer found another way).</param>
    /// <param name="maxRetries">Retries for this call; the Retries setting when null.</param>
    /// <returns>The answer.</returns>
    public async Task<ApiResponse> SendAsync(HttpMethod method, string path, JsonNode? body, CancellationToken cancellationToken,
        bool allowNotFound = false, Func<CancellationToken, Task<ApiResponse?>>? beforeRetry = null, int? maxRetries = null)
    {
        var payload = body?.ToJsonString(QarnotJson.Options);
        for (var attempt = 0; ; attempt++)
        {
            if (attempt > 0 && beforeRetry is not null)
            {
                var found = await beforeRetry(cancellationToken).ConfigureAwait(false);
                if (found is not null)
                {
                    return found;
                }
            }

            int status;
            string? problem;
            try
            {
                using var request = new HttpRequestMessage(method, path.TrimStart('/'));
                if (payload is not null)
                {
                    request.Content = new StringContent(payload, Encoding.UTF8, "application/json");
                }

                using var response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
                var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
                if (response.IsSuccessStatusCode || (allowNotFound && response.StatusCode == HttpStatusCode.NotFound))
                {
                    return new ApiResponse(response.StatusCode, text);
                }

                status = (int)response.StatusCode;
                if (!IsRetryable(status))
                {
                    throw ErrorFor(method, path, status, QarnotJson.ErrorMessage(text));
                }

                problem = $"{status} {QarnotJson.ErrorMessage(text)}".Trim();
            }
            catch (HttpRequestException ex)
            {
                status = 0;
                problem = ex.Message;
            }
            catch (TaskCanceledException ex) when (!cancellationToken.IsCancellationRequested)
            {
                status = 0;
                problem = "no answer in time: " + ex.Message;
            }

            if (attempt >= (maxRetries ?? _options.Retries))
            {
                throw new FarmUnavailableException(
                    _redactor.Redact($"Qarnot: the API at {_options.ApiUrl} is unavailable: {method} /{path.TrimStart('/')} failed {attempt + 1} times (last: {problem})."),
                    null, _pluginName);
            }

            var delay = TimeSpan.FromTicks(Math.Min(_options.RetryDelay.Ticks * (1L << Math.Min(attempt, 16)), TimeSpan.FromSeconds(60).Ticks));
            Log.Retrying(_logger, method.Method, "/" + path.TrimStart('/'), status, attempt + 1, _options.Retries, (long)delay.TotalMilliseconds);
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        }
    }

    public static bool IsRetryable(int status) => status is 429 or 500 or 502 or 503 or 504;

    private FarmPluginException ErrorFor(HttpMethod method, string path, int status, string? message)
    {
        var call = $"{method} /{path.TrimStart('/')}";
        var detail = string.IsNullOrWhiteSpace(message) ? string.Empty : $": {message}";
        var quota = message is not null && (message.Contains("quota", StringComparison.OrdinalIgnoreCase)
            || message.Contains("maximum number", StringComparison.OrdinalIgnoreCase)
            || message.Contains("credit", StringComparison.OrdinalIgnoreCase));
        var text = _redactor.Redact(status switch
        {
            402 => $"Qarnot: not enough credits to run ({status} on {call}){detail}.",
            401 or 403 when !quota => $"Qarnot: the Qarnot token was refused ({status} on {call}){detail}. Check the Token setting or QARNOT_CLIENT_TOKEN.",
            _ when quota => $"Qarnot: a quota of the account is reached ({status} on {call}){detail}.",
            404 => $"Qarnot: not found ({status} on {call}){detail}.",
            _ => $"Qarnot: {call} was refused with {status}{detail}.",
        });
        return status switch
        {
            402 => new FarmQuotaException(text, null, _pluginName),
            _ when quota => new FarmQuotaException(text, null, _pluginName),
            401 or 403 => new FarmAuthenticationException(text, null, _pluginName),
            _ => new FarmPluginException(text, null, _pluginName),
        };
    }

    private FarmPluginException Failure(string message) => new(_redactor.Redact("Qarnot: " + message + "."), null, _pluginName);

    public void Dispose() => _http.Dispose();
}
