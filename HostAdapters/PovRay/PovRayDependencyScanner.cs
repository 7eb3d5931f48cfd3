using System.Text;
using FarmApi;

namespace FarmPlugins.Hosts.PovRay;

/// <summary>
/// Collects the files a POV-Ray scene needs, searched as POV-Ray 3.7 does: a relative name is looked up in the
/// working folder (the scene's folder; POV-Ray does not search relative to the including file), then in each library
/// path, then in the system include folder (present on nodes, never staged). Follows <c>#include</c> recursively and
/// collects <c>image_map</c>, <c>bump_map</c>, <c>normal_map</c>, <c>material_map</c>, <c>height_field</c>,
/// <c>image_pattern</c>, <c>ttf</c> fonts and <c>#fopen ... read</c> files.
/// </summary>
internal sealed class PovRayDependencyScanner
{
    private static readonly HashSet<string> ImageKeywords =
        ["image_map", "bump_map", "normal_map", "material_map", "height_field", "image_pattern"];

    private static readonly HashSet<string> ImageTypes =
        ["gif", "tga", "iff", "ppm", "pgm", "png", "jpeg", "jpg", "tiff", "sys", "exr", "hdr", "bmp", "gray16"];

    private readonly string _sceneDirectory;
    private readonly IReadOnlyList<string> _libraryPaths;
    private readonly string _systemDirectory;
    private readonly string _stagingDirectory;
    private readonly Dictionary<string, string> _relativeByLocal = new(StringComparer.Ordinal);
    private readonly List<RenderFile> _files = [];
    private int _externalCount;

    public PovRayDependencyScanner(string sceneDirectory, IReadOnlyList<string> libraryPaths, string systemDirectory, string stagingDirectory)
    {
        _sceneDirectory = Path.GetFullPath(sceneDirectory);
        _libraryPaths = [.. libraryPaths.Select(p => Path.GetFullPath(p, _sceneDirectory))];
        _systemDirectory = Path.GetFullPath(systemDirectory);
        _stagingDirectory = stagingDirectory;
    }

    /// <summary>Scans the scene and everything it includes; the scene lands at the job folder's root.</summary>
    public async Task<IReadOnlyList<RenderFile>> ScanAsync(string scenePath, CancellationToken cancellationToken)
    {
        var scene = Path.GetFullPath(scenePath);
        var sceneRelative = Path.GetFileName(scene);
        _relativeByLocal[scene] = sceneRelative;
        var queue = new Queue<(string Local, string Relative)>();
        queue.Enqueue((scene, sceneRelative));
        while (queue.Count > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (local, relative) = queue.Dequeue();
            var text = await File.ReadAllTextAsync(local, cancellationToken).ConfigureAwait(false);
            var rewrites = new List<(int Start, int Length, string Value)>();
            foreach (var reference in FindReferences(text))
            {
                var resolved = Resolve(reference, local);
                if (resolved is null)
                {
                    continue;
                }

                var (full, stagedAs, rewrite) = resolved.Value;
                if (rewrite)
                {
                    rewrites.Add((reference.ValueStart, reference.ValueLength, stagedAs));
                }

                if (_relativeByLocal.TryAdd(full, stagedAs) && reference.Kind == ReferenceKind.Include)
                {
                    queue.Enqueue((full, stagedAs));
                }
                else if (reference.Kind != ReferenceKind.Include && !_files.Any(f => f.RelativePath == stagedAs))
                {
                    _files.Add(new RenderFile(full, stagedAs));
                }
            }

            var source = local;
            if (rewrites.Count > 0)
            {
                // A reference that climbs out of the scene folder (or is absolute) points at the staged copy instead.
                var builder = new StringBuilder(text);
                foreach (var (start, length, value) in rewrites.OrderByDescending(r => r.Start))
                {
                    builder.Remove(start, length).Insert(start, value);
                }

                source = Path.Combine(_stagingDirectory, relative);
                Directory.CreateDirectory(Path.GetDirectoryName(source)!);
                await File.WriteAllTextAsync(source, builder.ToString(), cancellationToken).ConfigureAwait(false);
            }

            _files.Add(new RenderFile(source, relative));
        }

        // The scene first, then includes and assets in the order found.
        var sceneFile = _files.First(f => f.RelativePath == sceneRelative);
        return [sceneFile, .. _files.Where(f => f != sceneFile)];
    }

    private (string Full, string StagedAs, bool Rewrite)? Resolve(Reference reference, string referencingFile)
    {
        var name = reference.Value;
        var candidates = new List<string> { name };
        if (Path.GetExtension(name).Length == 0 && reference.DefaultExtension is { } extension)
        {
            candidates.Add(name + extension);
        }

        if (Path.IsPathRooted(name))
        {
            foreach (var candidate in candidates.Where(File.Exists))
            {
                var full = Path.GetFullPath(candidate);
                return IsUnder(full, _systemDirectory) ? null : Place(full, reference.Value);
            }
        }
        else
        {
            foreach (var candidate in candidates)
            {
                var inScene = Path.GetFullPath(candidate, _sceneDirectory);
                if (File.Exists(inScene))
                {
                    return Place(inScene, reference.Value);
                }

                for (var i = 0; i < _libraryPaths.Count; i++)
                {
                    var inLibrary = Path.GetFullPath(candidate, _libraryPaths[i]);
                    if (File.Exists(inLibrary) && IsUnder(inLibrary, _libraryPaths[i]))
                    {
                        // Staged into the job folder's root: the working folder is searched before any library path
                        // (a node's system Library_Path would otherwise shadow it), and no scene file has this name.
                        var relative = Path.GetRelativePath(_libraryPaths[i], inLibrary).Replace('\\', '/');
                        return _relativeByLocal.TryGetValue(inLibrary, out var known) ? (inLibrary, known, false) : (inLibrary, relative, false);
                    }
                }

                if (File.Exists(Path.Combine(_systemDirectory, candidate)))
                {
                    return null;
                }
            }
        }

        var searched = Path.IsPathRooted(name)
            ? name
            : string.Join(", ", new[] { _sceneDirectory }.Concat(_libraryPaths).Append(_systemDirectory));
        throw new SceneException(
            $"cannot find {reference.What} '{name}' (searched {searched})",
            Path.GetRelativePath(_sceneDirectory, referencingFile) is var shown && !shown.StartsWith("..", StringComparison.Ordinal) ? shown : referencingFile,
            reference.Line);
    }

    private (string Full, string StagedAs, bool Rewrite) Place(string full, string written)
    {
        if (!_relativeByLocal.TryGetValue(full, out var stagedAs))
        {
            var relative = Path.GetRelativePath(_sceneDirectory, full).Replace('\\', '/');
            if (Path.IsPathRooted(relative) || !JobPaths.IsSafe(relative))
            {
                // Outside the scene folder: staged under _ext/<n>/ and the reference rewritten to point there.
                _externalCount++;
                relative = $"_ext/{_externalCount}/{Path.GetFileName(full)}";
            }

            stagedAs = relative;
        }

        // An absolute or climbing reference is rewritten to the staged relative path; a plain one is kept.
        return (full, stagedAs, written.Replace('\\', '/') != stagedAs);
    }

    private static bool IsUnder(string path, string folder)
    {
        var relative = Path.GetRelativePath(folder, path);
        return !relative.StartsWith("..", StringComparison.Ordinal) && !Path.IsPathRooted(relative);
    }

    internal enum ReferenceKind
    {
        Include,
        Image,
        Font,
        Data,
    }

    internal sealed record Reference(ReferenceKind Kind, string Value, int ValueStart, int ValueLength, int Line)
    {
        public string What => Kind switch
        {
            ReferenceKind.Include => "#include file",
            ReferenceKind.Image => "image file",
            ReferenceKind.Font => "font file",
            _ => "data file",
        };

        public string? DefaultExtension => Kind switch
        {
            ReferenceKind.Include => ".inc",
            ReferenceKind.Font => ".ttf",
            _ => null,
        };
    }

    /// <summary>The file references in POV-Ray source, skipping comments; computed names (macros, concat) are not followed.</summary>
    internal static IEnumerable<Reference> FindReferences(string text)
    {
        var tokens = Tokenize(text).ToList();
        for (var i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            if (token.Kind != TokenKind.Word)
            {
                continue;
            }

            switch (token.Text)
            {
                case "#include" when Next(i + 1) is { Kind: TokenKind.String } s:
                    yield return new Reference(ReferenceKind.Include, s.Text, s.Start, s.Text.Length, s.Line);
                    break;
                case "ttf" when Next(i + 1) is { Kind: TokenKind.String } s:
                    yield return new Reference(ReferenceKind.Font, s.Text, s.Start, s.Text.Length, s.Line);
                    break;
                case "#fopen" when Next(i + 2) is { Kind: TokenKind.String } s && Next(i + 3) is { Kind: TokenKind.Word, Text: "read" }:
                    yield return new Reference(ReferenceKind.Data, s.Text, s.Start, s.Text.Length, s.Line);
                    break;
                case var keyword when ImageKeywords.Contains(keyword) && Next(i + 1) is { Kind: TokenKind.Punctuation, Text: "{" }:
                    var at = i + 2;
                    if (Next(at) is { Kind: TokenKind.Word } type && ImageTypes.Contains(type.Text))
                    {
                        at++;
                    }

                    if (Next(at) is { Kind: TokenKind.String } file)
                    {
                        yield return new Reference(ReferenceKind.Image, file.Text, file.Start, file.Text.Length, file.Line);
                    }

                    break;
                default:
                    break;
            }
        }

        Token? Next(int index) => index < tokens.Count ? tokens[index] : null;
    }

    private enum TokenKind
    {
        Word,
        String,
        Punctuation,
    }

    private sealed record Token(TokenKind Kind, string Text, int Start, int Line);

    private static IEnumerable<Token> Tokenize(string text)
    {
        var line = 1;
        var i = 0;
        while (i < text.Length)
        {
            var c = text[i];
            if (c == '\n')
            {
                line++;
                i++;
            }
            else if (char.IsWhiteSpace(c))
            {
                i++;
            }
            else if (c == '/' && i + 1 < text.Length && text[i + 1] == '/')
            {
                while (i < text.Length && text[i] != '\n')
                {
                    i++;
                }
            }
            else if (c == '/' && i + 1 < text.Length && text[i + 1] == '*')
            {
                // POV-Ray block comments nest.
                var depth = 0;
                do
                {
                    if (text[i] == '\n')
                    {
                        line++;
                    }

                    if (text[i] == '/' && i + 1 < text.Length && text[i + 1] == '*')
                    {
                        depth++;
                        i += 2;
                    }
                    else if (text[i] == '*' && i + 1 < text.Length && text[i + 1] == '/')
                    {
                        depth--;
                        i += 2;
                    }
                    else
                    {
                        i++;
                    }
                }
                while (depth > 0 && i < text.Length);
            }
            else if (c == '"')
            {
                var start = i + 1;
                var startLine = line;
                i++;
                while (i < text.Length && text[i] != '"' && text[i] != '\n')
                {
                    i += text[i] == '\\' && i + 1 < text.Length ? 2 : 1;
                }

                yield return new Token(TokenKind.String, text[start..Math.Min(i, text.Length)], start, startLine);
                i++;
            }
            else if (c == '#' || char.IsLetter(c) || c == '_')
            {
                var start = i;
                i++;
                if (c == '#')
                {
                    // "# include" is the same directive as "#include".
                    while (i < text.Length && (text[i] == ' ' || text[i] == '\t'))
                    {
                        i++;
                    }
                }

                var wordStart = i;
                while (i < text.Length && (char.IsLetterOrDigit(text[i]) || text[i] == '_'))
                {
                    i++;
                }

                var word = c == '#' ? "#" + text[wordStart..i] : text[start..i];
                yield return new Token(TokenKind.Word, word, start, line);
            }
            else
            {
                yield return new Token(TokenKind.Punctuation, c.ToString(), i, line);
                i++;
            }
        }
    }
}
