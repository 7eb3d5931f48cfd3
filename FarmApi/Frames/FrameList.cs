using System.Collections;
using System.Globalization;
using System.Text;

namespace FarmApi;

/// <summary>
/// An ordered list of distinct frame numbers, parsed from the farm's frame-list grammar:
/// <c>1-100</c>, <c>1-100x2</c> (or <c>1-100:2</c>), <c>10-1</c> (descending), <c>1-10,20,30-40x5</c>,
/// negative frames (<c>-5--1</c>), spaces around tokens. Duplicates are removed, the first occurrence keeps its place.
/// </summary>
public sealed class FrameList : IReadOnlyList<int>, IEquatable<FrameList>
{
    /// <summary>The most frames one list may hold.</summary>
    public const int MaxFrames = 1_000_000;

    private readonly int[] _frames;

    private FrameList(int[] frames) => _frames = frames;

    /// <summary>The number of frames.</summary>
    public int Count => _frames.Length;

    /// <summary>The frame at <paramref name="index"/>.</summary>
    /// <param name="index">The position in the list.</param>
    public int this[int index] => _frames[index];

    /// <summary>The smallest frame.</summary>
    public int Min => _frames.Min();

    /// <summary>The largest frame.</summary>
    public int Max => _frames.Max();

    /// <summary>Parses a frame list.</summary>
    /// <param name="text">For example <c>1-10,20,30-40x5</c>.</param>
    /// <returns>The frames, in order, without duplicates.</returns>
    /// <exception cref="FrameListFormatException">The text does not parse; the message names the token and its position.</exception>
    public static FrameList Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return new Parser(text).Parse();
    }

    /// <summary>Parses a frame list without throwing.</summary>
    /// <param name="text">The text.</param>
    /// <param name="frames">The frames, or null.</param>
    /// <param name="error">Why it does not parse, or null.</param>
    /// <returns>Whether it parsed.</returns>
    public static bool TryParse(string? text, out FrameList? frames, out string? error)
    {
        frames = null;
        error = null;
        if (text is null)
        {
            error = "The frame list is empty.";
            return false;
        }

        try
        {
            frames = Parse(text);
            return true;
        }
        catch (FrameListFormatException e)
        {
            error = e.Message;
            return false;
        }
    }

    /// <summary>Makes a list from frame numbers, removing duplicates and keeping order.</summary>
    /// <param name="frames">The frames; at least one.</param>
    /// <returns>The list.</returns>
    public static FrameList Of(IEnumerable<int> frames)
    {
        ArgumentNullException.ThrowIfNull(frames);
        var seen = new HashSet<int>();
        var list = new List<int>();
        foreach (var frame in frames)
        {
            if (seen.Add(frame))
            {
                list.Add(frame);
                if (list.Count > MaxFrames)
                {
                    throw new ArgumentException($"A frame list holds at most {MaxFrames:N0} frames.", nameof(frames));
                }
            }
        }

        if (list.Count == 0)
        {
            throw new ArgumentException("A frame list holds at least one frame.", nameof(frames));
        }

        return new FrameList([.. list]);
    }

    /// <summary>Makes the list <c>first-last</c> with a step.</summary>
    /// <param name="first">The first frame.</param>
    /// <param name="last">The last frame (it may be below <paramref name="first"/>: descending).</param>
    /// <param name="step">The step, at least 1.</param>
    /// <returns>The list.</returns>
    public static FrameList Range(int first, int last, int step = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        return Of(Enumerate(first, last, step));
    }

    /// <summary>Splits the list into consecutive groups of <paramref name="size"/> frames (the last may be shorter).</summary>
    /// <param name="size">Frames per group, at least 1.</param>
    /// <returns>The groups, in order.</returns>
    public IReadOnlyList<FrameList> Chunk(int size)
    {
        if (size < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "chunk: a chunk holds at least 1 frame.");
        }

        var chunks = new List<FrameList>((_frames.Length + size - 1) / size);
        for (var start = 0; start < _frames.Length; start += size)
        {
            chunks.Add(new FrameList(_frames[start..Math.Min(start + size, _frames.Length)]));
        }

        return chunks;
    }

    /// <summary>The compact form: runs with a constant step become <c>first-last</c> or <c>first-lastxstep</c>.</summary>
    /// <returns>For example <c>1-10,20,30-40x5</c>.</returns>
    public override string ToString()
    {
        var text = new StringBuilder();
        var i = 0;
        while (i < _frames.Length)
        {
            if (text.Length > 0)
            {
                text.Append(',');
            }

            var j = i;
            if (i + 1 < _frames.Length)
            {
                var step = (long)_frames[i + 1] - _frames[i];
                while (j + 1 < _frames.Length && (long)_frames[j + 1] - _frames[j] == step)
                {
                    j++;
                }

                if (j - i >= 2)
                {
                    text.Append(CultureInfo.InvariantCulture, $"{_frames[i]}-{_frames[j]}");
                    if (Math.Abs(step) != 1)
                    {
                        text.Append(CultureInfo.InvariantCulture, $"x{Math.Abs(step)}");
                    }

                    i = j + 1;
                    continue;
                }
            }

            text.Append(_frames[i].ToString(CultureInfo.InvariantCulture));
            i++;
        }

        return text.ToString();
    }

    /// <inheritdoc/>
    public IEnumerator<int> GetEnumerator() => ((IEnumerable<int>)_frames).GetEnumerator();

    /// <inheritdoc/>
    IEnumerator IEnumerable.GetEnumerator() => _frames.GetEnumerator();

    /// <inheritdoc/>
    public bool Equals(FrameList? other) => other is not null && _frames.AsSpan().SequenceEqual(other._frames);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as FrameList);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var frame in _frames)
        {
            hash.Add(frame);
        }

        return hash.ToHashCode();
    }

    private static IEnumerable<int> Enumerate(int first, int last, int step)
    {
        if (first <= last)
        {
            for (long frame = first; frame <= last; frame += step)
            {
                yield return (int)frame;
            }
        }
        else
        {
            for (long frame = first; frame >= last; frame -= step)
            {
                yield return (int)frame;
            }
        }
    }

    private sealed class Parser(string text)
    {
        private int _at;

        public FrameList Parse()
        {
            var frames = new List<int>();
            var seen = new HashSet<int>();
            long total = 0;
            SkipSpaces();
            if (_at >= text.Length)
            {
                throw new FrameListFormatException(text, text, 1, "the frame list is empty");
            }

            while (true)
            {
                SkipSpaces();
                var itemStart = _at;
                if (_at >= text.Length || text[_at] == ',')
                {
                    throw Error(itemStart, "expected a frame number");
                }

                var first = ReadNumber();
                var last = first;
                var step = 1;
                SkipSpaces();
                if (_at < text.Length && text[_at] == '-')
                {
                    _at++;
                    SkipSpaces();
                    last = ReadNumber();
                    SkipSpaces();
                    if (_at < text.Length && text[_at] is 'x' or 'X' or ':')
                    {
                        _at++;
                        SkipSpaces();
                        var stepStart = _at;
                        var parsedStep = ReadNumber();
                        if (parsedStep < 1)
                        {
                            throw Error(stepStart, "a step is at least 1");
                        }

                        step = parsedStep;
                        SkipSpaces();
                    }
                }

                total += (Math.Abs((long)last - first) / step) + 1;
                if (total > MaxFrames)
                {
                    throw Error(itemStart, $"the list holds more than {MaxFrames:N0} frames");
                }

                foreach (var frame in Enumerate(first, last, step))
                {
                    if (seen.Add(frame))
                    {
                        frames.Add(frame);
                    }
                }

                if (_at >= text.Length)
                {
                    break;
                }

                if (text[_at] != ',')
                {
                    throw Error(_at, "expected ',' or the end of the list");
                }

                _at++;
            }

            return new FrameList([.. frames]);
        }

        private int ReadNumber()
        {
            var start = _at;
            if (_at < text.Length && text[_at] is '-' or '+')
            {
                _at++;
            }

            var digitsStart = _at;
            while (_at < text.Length && char.IsAsciiDigit(text[_at]))
            {
                _at++;
            }

            if (_at == digitsStart)
            {
                _at = start;
                throw Error(start, "expected a number");
            }

            if (!int.TryParse(text.AsSpan(start, _at - start), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
            {
                throw Error(start, "the number is out of range");
            }

            return value;
        }

        private void SkipSpaces()
        {
            while (_at < text.Length && char.IsWhiteSpace(text[_at]))
            {
                _at++;
            }
        }

        private FrameListFormatException Error(int start, string reason)
        {
            // The token runs from start to the next separator, so the message shows what the user typed.
            var end = start;
            while (end < text.Length && text[end] != ',' && !(end > start && char.IsWhiteSpace(text[end])))
            {
                end++;
            }

            var token = end > start ? text[start..end] : (start < text.Length ? text[start].ToString() : "<end>");
            return new FrameListFormatException(text, token, start + 1, reason);
        }
    }
}
