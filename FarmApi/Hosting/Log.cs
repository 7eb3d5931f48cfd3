using Microsoft.Extensions.Logging;

namespace FarmApi.Hosting;

// FarmApi.Hosting's messages: event ids 1100-1199.
internal static partial class Log
{
    [LoggerMessage(EventId = 1100, Level = LogLevel.Debug, Message = "Resources path {Path} has no Plugins folder")]
    public static partial void NoPluginsFolder(ILogger logger, string path);

    [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "Plug-in {Path}: {Reason}")]
    public static partial void PluginDiagnostic(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Debug, Message = "Loaded plug-in {Name} from {Path}")]
    public static partial void PluginLoaded(ILogger logger, string name, string path);
}
